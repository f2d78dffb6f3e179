"""The evaluator: runs the configured suites on a trained model and a dataset.

It knows a model and a dataset, never the method that trained them; a model may offer extra
`views()` (e.g. H-SPLID's salient-only head) that suites score as diagnostics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch

from .config import RunConfig
from .data import Batch, BenchmarkDataset, EvalSet, Split, first_of_shuffle, iterate
from .models import Classifier
from .progress import Reporter
from .registry import SUITES
from .store import Measurement


@dataclass
class EvalContext:
    """What a suite sees: the model (in eval mode), the dataset, the config and earlier results."""

    model: Classifier
    dataset: BenchmarkDataset
    config: RunConfig
    device: torch.device
    reporter: Reporter
    artifacts_dir: Path | None = None
    measurements: list[Measurement] = field(default_factory=list)
    _splits: dict[str, Split] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in self._splits:
            self._splits[name] = self.dataset.split(name)
        return self._splits[name]

    def eval_sets(self) -> list[EvalSet]:
        """The configured splits, then the dataset's own eval sets (variants)."""
        return [EvalSet(name, self.split(name)) for name in self.config.eval.splits] + self.dataset.eval_sets()

    def batches(self, split: Split, limit: int | None = None, batch_size: int | None = None) -> Iterator[Batch]:
        """Batches on the device; `limit` takes a fixed seeded subset (the same for every run)."""
        indices = first_of_shuffle(len(split), limit)
        for batch in iterate(split, batch_size or self.config.eval.batch_size, indices=indices):
            yield batch.to(self.device)


class Suite:
    """Base of an evaluation suite: `run(ctx)` returns measurements."""

    name: ClassVar[str] = ""
    Params: ClassVar[type | None] = None

    def __init__(self, params: Any = None):
        self.params = params

    def check(self, dataset: BenchmarkDataset) -> None:
        """Reject settings this dataset cannot serve (e.g. an unknown region), before training."""

    def run(self, ctx: EvalContext) -> list[Measurement]:
        return []


def check_suites(config: RunConfig, dataset: BenchmarkDataset) -> None:
    """Every configured suite's `check` against the dataset: bad settings fail before any work."""
    for name in config.eval.suites:
        SUITES.get(name)(config.suite(name)).check(dataset)


def evaluate(model: Classifier, dataset: BenchmarkDataset, config: RunConfig, device: torch.device,
             reporter: Reporter | None = None, artifacts_dir: Path | None = None) -> list[Measurement]:
    """Run every suite of config.eval.suites in order; later suites see earlier measurements."""
    model.eval()
    ctx = EvalContext(model, dataset, config, device, reporter or Reporter(quiet=True), artifacts_dir)
    for name in config.eval.suites:
        suite = SUITES.get(name)(config.suite(name))
        started = time.perf_counter()
        produced = suite.run(ctx)
        elapsed = time.perf_counter() - started
        for m in produced:
            if m.duration_s is None:
                m.duration_s = elapsed
        ctx.measurements.extend(produced)
    return ctx.measurements
