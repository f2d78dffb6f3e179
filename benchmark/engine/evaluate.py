"""The evaluator: runs the configured suites on a trained model and a dataset.

It knows a model and a dataset, never the method that trained them; a model may offer extra
`views()` (e.g. H-SPLID's salient-only head) that suites score as diagnostics.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import torch
from rich.text import Text

from benchmark.config import RunConfig
from benchmark.data.loader import iterate, resolve_workers
from benchmark.data.split import Batch, EvalSet, Split, first_of_shuffle
from benchmark.dataset import BenchmarkDataset
from benchmark.distributed import World
from benchmark.errors import ConfigError
from benchmark.files import write_bytes
from benchmark.models import Classifier
from benchmark.progress import Reporter
from benchmark.registry import SUITES
from benchmark.results.store import FAILED, Measurement


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
    _artifacts: list[tuple[str, bytes]] = field(default_factory=list)

    def save_artifact(self, relative: str, data: bytes) -> None:
        """A file for the run's artifacts folder (e.g. example heatmaps), written by the main rank
        whichever rank made it; nothing is written where the run has no artifacts folder."""
        self._artifacts.append((relative, data))

    def take_artifacts(self) -> list[tuple[str, bytes]]:
        taken, self._artifacts = self._artifacts, []
        return taken

    def split(self, name: str) -> Split:
        if name not in self._splits:
            self._splits[name] = self.dataset.split(name)
        return self._splits[name]

    def eval_sets(self) -> list[EvalSet]:
        """The configured splits, then the dataset's own eval sets (variants)."""
        return [EvalSet(name, self.split(name)) for name in self.config.eval.splits] + self.dataset.eval_sets()

    def batches(self, split: Split, limit: int | None = None, batch_size: int | None = None) -> Iterator[Batch]:
        """Batches on the device, decoded by `eval.workers` processes (and `eval.decoder`) for
        file-backed splits; `limit` takes a fixed seeded subset (the same for every run)."""
        cfg = self.config.eval
        yield from iterate(split, batch_size or cfg.batch_size, indices=first_of_shuffle(len(split), limit),
                           workers=resolve_workers(cfg.workers), device=self.device, decoder=cfg.decoder)


Piece = Callable[[], list[Measurement]]


class Suite:
    """Base of an evaluation suite: `run(ctx)` returns measurements.

    A suite may instead split its work into `pieces(ctx)`: independent callables, each seeding its
    own randomness, so their rows do not depend on which process runs them or in what company.
    The evaluator then shares the pieces out over the ranks of a torchrun run and hands their rows,
    in piece order, to `combine` (one process gives exactly the rows N processes give)."""

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
        """The whole suite in this process: its pieces in order, then `combine`."""
        return self.combine(ctx, [m for piece in self.pieces(ctx) for m in piece()])

    def pieces(self, ctx: EvalContext) -> list[Piece]:
        """Independent pieces of work (default: none, the suite is its `run`). May prepare what
        every piece shares (the evaluated samples, clean predictions) on every rank."""
        return []

    def combine(self, ctx: EvalContext, rows: list[Measurement]) -> list[Measurement]:
        """The suite's rows from its pieces' rows (e.g. flags or gaps that compare pieces)."""
        return rows


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
    # the finished pieces (index -> rows, before `combine`) of each suite that failed or was
    # interrupted: a rerun takes them instead of measuring them again
    unfinished: dict[str, dict[int, list[Measurement]]] = field(default_factory=dict)


def failure_row(suite: str, reason: str) -> Measurement:
    """The row that records a failed suite in the results file (value NaN, reason in extra.error)."""
    return Measurement(suite, FAILED, float("nan"), 0, eval_set=None, extra={"error": reason})


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or "(no message)"
    return f"{type(err).__name__}: {text[:300]}"


@dataclass(frozen=True)
class Plan:
    """Suites to run (default: config.eval.suites), pieces done before (suite -> index -> rows), who saves."""

    suites: Sequence[str] | None = None
    finished: Mapping[str, Mapping[int, list[Measurement]]] = field(default_factory=dict)
    progress: Progress | None = None


def evaluate(model: Classifier, dataset: BenchmarkDataset, config: RunConfig, device: torch.device,
             reporter: Reporter | None = None, artifacts_dir: Path | None = None, world: World = World(),
             plan: Plan = Plan()) -> Evaluation:
    """Run the suites (default: config.eval.suites) in order; later suites see earlier measurements.

    A suite that raises is recorded as a `failed` row and the next one runs: what finished is
    never thrown away. Ctrl-C stops after recording the interrupted suite. The pieces a failed or
    interrupted suite finished come back in `unfinished`; given again as `finished` (suite ->
    piece index -> rows) they are taken instead of measured. `progress` (called on the main rank
    after every suite, and in a single process after every piece with the running suite's
    finished pieces) lets the caller save as it goes. Under torchrun every rank calls this; each
    suite's pieces are shared out and every rank gets all the rows."""
    model.eval()
    reporter = reporter or Reporter(quiet=True)
    ctx = EvalContext(model, dataset, config, device, reporter, artifacts_dir)
    out = Evaluation(ctx.measurements)
    for name in config.eval.suites if plan.suites is None else plan.suites:
        suite = SUITES.get(name)(config.suite(name))
        on_piece = partial(_running, plan.progress, out, name) if plan.progress and world.size == 1 else None
        produced = run_pieces(suite, ctx, world, plan.finished.get(name, {}), on_piece)
        if isinstance(produced, Failure):
            if produced.pieces:
                out.unfinished[name] = dict(produced.pieces)
            out.failures[name] = produced.reason
            out.by_suite[name] = [failure_row(name, produced.reason)]
            if produced.reason == INTERRUPTED:
                out.interrupted = True
                break
            out.tracebacks[name] = produced.traceback
            reporter.log(Text.assemble("  ", (f"suite {name} failed", "red"), f": {produced.reason}"))
        else:
            produced = suite.combine(ctx, produced)
            ctx.measurements.extend(produced)
            out.by_suite[name] = produced
        if plan.progress is not None and world.main:
            try:
                plan.progress(out, {})
            except KeyboardInterrupt:  # the suite's rows are in; the caller writes them once more
                out.interrupted = True
                break
    out.measurements = [m for rows in out.by_suite.values() for m in rows]
    return out


# what evaluation has done so far, and the finished pieces of the suite that is running
Progress = Callable[["Evaluation", Mapping[str, Mapping[int, list[Measurement]]]], object]


def _running(progress: Progress, out: Evaluation, name: str, pieces: Mapping[int, list[Measurement]]) -> None:
    progress(out, {name: pieces})


INTERRUPTED = "interrupted"
NOT_RUN = "not run: the evaluation stopped before this suite"


@dataclass(frozen=True)
class Failure:
    reason: str
    traceback: str = ""
    pieces: Mapping[int, list[Measurement]] = field(default_factory=dict)  # the pieces that finished


def run_pieces(suite: Suite, ctx: EvalContext, world: World, finished: Mapping[int, list[Measurement]] | None = None,
               on_piece: Callable[[dict[int, list[Measurement]]], None] | None = None) -> list[Measurement] | Failure:
    """This rank's share of the suite's pieces, then every piece's rows in piece order (or the first
    failure by piece order, with the pieces that finished) on every rank; the main rank writes the
    pieces' artifacts. Pieces in `finished` (an earlier execution's) are taken, not run; `on_piece`
    gets the pieces finished so far after each one this process runs. Rows a piece leaves without
    a duration get the piece's time."""
    pieces, done = prepared_pieces(suite, ctx)
    finished = {i: rows for i, rows in (finished or {}).items() if not pieces or i < len(pieces)}
    if finished and pieces:
        ctx.reporter.log(f"  {suite.name}: keeping {len(finished)} of its {len(pieces)} pieces measured before")
    stopped = run_mine(pieces, finished, done, world, on_piece)
    merged = gathered(ctx, world, done)
    failures = [part for _, part in sorted(merged.items()) if isinstance(part, Failure)]
    failures += [Failure(INTERRUPTED)] if stopped else []
    if failures:
        first = next((f for f in failures if f.reason == INTERRUPTED), failures[0])
        kept = {**finished, **{i: part for i, part in merged.items() if not isinstance(part, Failure)}}
        return replace(first, pieces=dict(sorted(kept.items())))
    return [m for _, part in sorted(merged.items()) for m in part]  # type: ignore[union-attr]


def prepared_pieces(suite: Suite, ctx: EvalContext) -> tuple[list[Piece], dict[int, list[Measurement] | Failure]]:
    """The suite's pieces (the whole suite as one when it has none); preparing them may fail, and
    then the suite fails on every rank with no piece to run."""
    try:
        return suite.pieces(ctx) or [partial(suite.run, ctx)], {}
    except KeyboardInterrupt:
        return [], {0: Failure(INTERRUPTED)}
    except Exception as err:
        return [], {0: Failure(one_line(err), traceback.format_exc())}


def run_piece(piece: Piece) -> list[Measurement] | Failure:
    """One piece's rows (each given the piece's time when it has none), or its failure."""
    started = time.perf_counter()
    try:
        rows = piece()
    except KeyboardInterrupt:
        return Failure(INTERRUPTED)
    except Exception as err:  # one piece's failure fails the suite, not the evaluation
        return Failure(one_line(err), traceback.format_exc())
    for m in rows:
        if m.duration_s is None:
            m.duration_s = time.perf_counter() - started
    return rows


def run_mine(pieces: list[Piece], finished: Mapping[int, list[Measurement]],
             done: dict[int, list[Measurement] | Failure], world: World,
             on_piece: Callable[[dict[int, list[Measurement]]], None] | None) -> bool:
    """This rank's pieces into `done`, up to the first failure; True when Ctrl-C came while
    `on_piece` saved the pieces finished so far."""
    for i in world.mine(len(pieces)):
        if i in finished:
            done[i] = list(finished[i])
            continue
        outcome = done[i] = run_piece(pieces[i])
        if isinstance(outcome, Failure):
            return False
        if on_piece is not None:
            try:
                on_piece({**finished, **{j: part for j, part in done.items() if not isinstance(part, Failure)}})
            except KeyboardInterrupt:
                return True
    return False


def gathered(ctx: EvalContext, world: World, done: dict[int, list[Measurement] | Failure]
             ) -> dict[int, list[Measurement] | Failure]:
    """Every rank's pieces on every rank; the main rank writes the artifacts they made."""
    shared = world.share((done, ctx.take_artifacts()))
    if world.main and ctx.artifacts_dir is not None:
        for relative, data in (a for _, rank_artifacts in shared for a in rank_artifacts):
            write_bytes(ctx.artifacts_dir / relative, data)
    return {i: part for rank_done, _ in shared for i, part in rank_done.items()}
