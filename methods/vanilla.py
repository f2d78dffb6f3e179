"""Vanilla training: cross-entropy only."""

from benchmark.method import Method
from benchmark.registry import METHODS


@METHODS.register("vanilla")
class Vanilla(Method[None]):
    """Cross-entropy with Adam and no regulariser: the baseline every method is compared to."""

    stackable = True  # tests/test_stacked.py

    def plain_epochs(self) -> int:
        return 1_000_000  # every epoch is plain cross-entropy
