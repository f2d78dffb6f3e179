"""Vanilla training: cross-entropy only."""

from benchmark.method import Method
from benchmark.registry import METHODS


@METHODS.register("vanilla")
class Vanilla(Method[None]):
    """Cross-entropy with Adam and no regulariser: the baseline every method is compared to."""
