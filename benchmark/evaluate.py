"""The evaluator: runs the configured suites on a trained model and a dataset.

It knows a model and a dataset, never the method that trained them; a model may offer extra
`views()` (e.g. H-SPLID's salient-only head) that suites score as diagnostics.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import torch
from rich.text import Text

from .config import RunConfig
from .data import Batch, EvalSet, Split, first_of_shuffle, iterate
from .dataset import BenchmarkDataset
from .errors import ConfigError
from .models import Classifier
from .progress import Reporter
from .registry import SUITES
from .store import FAILED, Measurement


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
    # The `suite` values of the rows it writes (default: its own name), so that a rerun can tell
    # which stored rows a finished suite produced.
    emits: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def row_suites(cls) -> tuple[str, ...]:
        return cls.emits or (cls.name,)

    def __init__(self, params: Any = None):
        self.params = params

    def check(self, dataset: BenchmarkDataset) -> None:
        """Reject settings this dataset cannot serve (e.g. an unknown region), before training."""

    def run(self, ctx: EvalContext) -> list[Measurement]:
        return []


def check_suites(config: RunConfig, dataset: BenchmarkDataset) -> None:
    """The splits scored and every configured suite's `check` against the dataset: bad settings
    fail before any work."""
    for split in config.eval.splits:
        check_split(split, dataset, "eval.splits")
    for name in config.eval.suites:
        SUITES.get(name)(config.suite(name)).check(dataset)


def check_split(name: str, dataset: BenchmarkDataset, key: str) -> None:
    """A split name the dataset serves, or a one-line ConfigError naming the setting."""
    if name not in dataset.split_names:
        raise ConfigError(f"{key}: dataset {dataset.name!r} has no split {name!r}; expected one of "
                          f"{', '.join(dataset.split_names)}")


@dataclass
class Evaluation:
    """What `evaluate` measured, and the suites that failed (each recorded as a `failed` row too)."""

    measurements: list[Measurement]
    by_suite: dict[str, list[Measurement]] = field(default_factory=dict)  # what each suite produced, in order
    failures: dict[str, str] = field(default_factory=dict)  # suite -> one-line reason
    tracebacks: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False  # stopped by Ctrl-C; the suites before it are kept


def failure_row(suite: str, reason: str) -> Measurement:
    """The row that records a failed suite in the results file (value NaN, reason in extra.error)."""
    return Measurement(suite, FAILED, float("nan"), 0, eval_set=None, extra={"error": reason})


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or "(no message)"
    return f"{type(err).__name__}: {text[:300]}"


def evaluate(model: Classifier, dataset: BenchmarkDataset, config: RunConfig, device: torch.device,
             reporter: Reporter | None = None, artifacts_dir: Path | None = None,
             suites: Sequence[str] | None = None) -> Evaluation:
    """Run the suites (default: config.eval.suites) in order; later suites see earlier measurements.

    A suite that raises is recorded as a `failed` row and the next one runs: what finished is
    never thrown away. Ctrl-C stops after recording the interrupted suite."""
    model.eval()
    reporter = reporter or Reporter(quiet=True)
    ctx = EvalContext(model, dataset, config, device, reporter, artifacts_dir)
    out = Evaluation(ctx.measurements)
    for name in config.eval.suites if suites is None else suites:
        started = time.perf_counter()
        try:
            produced = SUITES.get(name)(config.suite(name)).run(ctx)
        except KeyboardInterrupt:
            out.failures[name] = "interrupted"
            out.by_suite[name] = [failure_row(name, "interrupted")]
            out.interrupted = True
            break
        except Exception as err:  # one suite's failure must not discard the others
            out.failures[name] = one_line(err)
            out.tracebacks[name] = traceback.format_exc()
            out.by_suite[name] = [failure_row(name, out.failures[name])]
            reporter.log(Text.assemble("  ", (f"suite {name} failed", "red"), f": {out.failures[name]}"))
            continue
        elapsed = time.perf_counter() - started
        for m in produced:
            if m.duration_s is None:
                m.duration_s = elapsed
        ctx.measurements.extend(produced)
        out.by_suite[name] = produced
    out.measurements = [m for rows in out.by_suite.values() for m in rows]
    return out
