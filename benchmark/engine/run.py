"""One benchmark run: resolve the config, train, checkpoint, evaluate, write the Parquet file."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from rich.text import Text

from benchmark import provenance
from benchmark.checkpoint import load_checkpoint
from benchmark.config import RUN_PREFIX, RunConfig, resolve
from benchmark.distributed import World
from benchmark.engine.evaluate import Plan, check_suites, evaluate
from benchmark.engine.saving import ResultsWriter, log_tracebacks, training_measurements, write_results
from benchmark.engine.start import StartPoint, find_start, start_run
from benchmark.engine.train import DIVERGENCE_RATIO, TrainResult
from benchmark.engine.trained import build, checkpoint_config, seeded
from benchmark.engine.weights import Built, FromCheckpoint, Training, WeightSource, Workspace
from benchmark.errors import DataError
from benchmark.progress import Reporter
from benchmark.registry import SUITES
from benchmark.results.kept import Holdings, holdings
from benchmark.results.layout import RunFiles
from benchmark.results.store import Measurement


@dataclass
class RunOutcome:
    config: RunConfig
    run_id: str
    results_path: Path
    checkpoint_path: Path | None
    measurements: list[Measurement]
    skipped: bool = False  # its results were already there (skip_existing)
    resumed_from_step: int | None = None  # training continued from a resume checkpoint at this step
    failures: dict[str, str] = field(default_factory=dict)  # suite -> one-line reason (rows kept for the rest)
    reused_suites: tuple[str, ...] = ()  # suites whose finished rows an earlier execution had written

    @property
    def ok(self) -> bool:
        return not self.failures


def run(  # noqa: PLR0913 (public: one keyword-only option per CLI flag)
    method: str,
    dataset: str,
    *,
    profile: str = "quick",
    seed: int = 0,
    overrides: Sequence[str] | Mapping[str, Mapping[str, Any]] = (),
    workspace: Workspace = Workspace(),
    resume: bool = True,
    skip_existing: bool = False,
    checkpoint_every: int | None = None,
    tags: Mapping[str, Any] | None = None,
) -> RunOutcome:
    """Train `method` on `dataset`, evaluate it and write one Parquet file of results.

    With `resume`, a run of the same config key continues from its resume checkpoint (written at
    epoch ends and every `checkpoint_every` steps), a finished checkpoint is evaluated without
    training again, and suites whose rows an earlier execution already wrote completely are kept
    instead of being measured again. With `skip_existing`, a run whose results (with no failed
    suite) and checkpoint exist does nothing. `tags` join every row's `extra`."""
    config = resolve(method, dataset, profile=profile, seed=seed, overrides=overrides)
    return execute(config, Training(resume, checkpoint_every), workspace, skip_existing=skip_existing, tags=tags)


def execute(config: RunConfig, source: WeightSource, workspace: Workspace, *, skip_existing: bool = False,
            tags: Mapping[str, Any] | None = None) -> RunOutcome:
    """The one path of a run, in phases: build and check (bad input fails before the lock is
    taken or anything is written), take the lock, read what the folder holds, obtain weights,
    evaluate what is missing, write the results file. A failing suite is recorded and the others
    still run; an interrupted evaluation writes what finished, then re-raises."""
    created = provenance.now()
    device, world, reporter = placed(workspace)
    with seeded(config.seed, device):
        built = build_run(config, source, workspace, device, world, reporter)
        start = starting_point(config, workspace) if source.trains and config.start is not None \
            and not built.files.checkpoint.is_file() else None
        with built.files.claimed(config.key(), reporter) if world.main else contextlib.nullcontext():
            held_now = world.decide(held(built.files, config, source) if world.main else None)
            if skip_existing and held_now.done and (not source.trains or held_now.has_checkpoint):
                return RunOutcome(config, held_now.done, built.files.results,
                                  built.files.checkpoint if source.trains else None, [], skipped=True)
            return evaluated(built, source, held_now, start, created, tags)


def placed(workspace: Workspace) -> tuple[torch.device, World, Reporter]:
    """The device, the torchrun group and the reporter: one device per rank; only rank 0 talks,
    locks and writes."""
    reporter = workspace.reporter or Reporter(quiet=True)
    device = provenance.resolve_device(workspace.device)
    world = World.from_env(device)
    if world.size > 1:
        device = torch.device("cuda", world.local_rank) if device.type == "cuda" else device
        reporter = reporter if world.main else Reporter(quiet=True, warnings=False)
    return device, world, reporter


def build_run(config: RunConfig, source: WeightSource, workspace: Workspace, device: torch.device, world: World,
              reporter: Reporter) -> Built:
    """Dataset, method and model with the source's weights, checked before anything is written."""
    ds, method_obj, model = build(config, workspace.data_root, model=source.model)
    built = Built(config, workspace.files(config), device, world, reporter, ds, method_obj, model)
    source.load(built)
    ds.check(training=source.trains)
    check_suites(config, ds)
    for note in ds.notes:
        reporter.log(f"  {note}")
    return built


def held(files: RunFiles, config: RunConfig, source: WeightSource) -> Holdings:
    """What the folder holds of this run (read by rank 0, under the lock)."""
    return holdings(files, config.key(), {s: SUITES.get(s).row_suites() for s in config.eval.suites}, source.reuses)


def evaluated(built: Built, source: WeightSource, held: Holdings, start: StartPoint | None, created,
              tags: Mapping[str, Any] | None) -> RunOutcome:
    """Obtain the weights, evaluate the suites the folder does not hold, write after every suite."""
    config, files, world, reporter = built.config, built.files, built.world, built.reporter
    built.model.to(built.device)
    what = "" if source.trains else ("model " if source.model is not None else "checkpoint ")
    reporter.log(Text.assemble((config.method_name, "bold"), f" {what}on ", (config.dataset, "bold"),
                               f" ({config.profile}, seed {config.seed}, "
                               f"{provenance.device_name(built.device, world.size)})"))
    result = source.obtain(built, start)
    diverged = warn_if_diverged(config, source.history(result), reporter)
    if held.kept:
        reporter.log(f"  keeping the finished suites {', '.join(held.kept)} of {files.results}")
    todo = [s for s in config.eval.suites if s not in held.kept]
    writer = ResultsWriter(files, partial(write_results, config=config, created=created, device=built.device,
                                          data_source=built.dataset.source(), train_commit=source.trained_by(result),
                                          ranks=world.size),
                           config.eval.suites, todo, training_measurements(result) if result else [], held.kept,
                           {**source.marks(result), **(tags or {})}, diverged)
    pieces = {s: p for s, p in held.pieces.items() if s in todo}
    plan = Plan(todo, pieces, writer.save if world.main else None)
    evaluation = evaluate(built.model, built.dataset, config, built.device, reporter, files.artifacts, world, plan)
    if not world.main:  # every rank evaluated its share; rank 0 writes
        return RunOutcome(config, "", files.results, None, [], failures=evaluation.failures)
    # after the last suite the progress write is the final file, unless Ctrl-C came first
    path = writer.save(evaluation, {}) if evaluation.interrupted or not todo else files.results
    if evaluation.tracebacks:
        log_tracebacks(files, evaluation.tracebacks)
    if evaluation.interrupted:
        raise KeyboardInterrupt
    return RunOutcome(config, provenance.run_id(config.key(), created), path,
                      files.checkpoint if source.trains else None, writer.rows(evaluation),
                      resumed_from_step=result.resumed_from_step if result else None,
                      failures=evaluation.failures, reused_suites=tuple(held.kept))


def warn_if_diverged(config: RunConfig, history: list[dict[str, float]], reporter: Reporter) -> bool:
    """Whether the training diverged (its final loss over DIVERGENCE_RATIO times its first); one
    warning line, even under --quiet, when it did."""
    diverged = TrainResult(history, 0.0, []).diverged
    if diverged:
        reporter.warn(f"{config.method_name} on {config.dataset} (seed {config.seed}) diverged: the final "
                      f"training loss is over {DIVERGENCE_RATIO:g} times the first; every row is flagged "
                      "`diverged`, and boards show it without ranking it")
    return diverged


def starting_point(config: RunConfig, workspace: Workspace) -> StartPoint:
    """The weights `config` starts from; a missing `run:<method>` is trained first (once: a
    second run finds it, a killed one resumes it), its rows marked `extra.role = "start"`."""
    try:
        return find_start(config, workspace.out_dir)
    except DataError:
        if not (config.train.init_from or "").startswith(RUN_PREFIX):
            raise
    first = start_run(config)
    reporter = workspace.reporter or Reporter(quiet=True)
    reporter.log(Text.assemble("  starting run: ", (first.method, "bold"), f" for {first.train.epochs} epoch(s), "
                               "trained once and shared by every run that starts from it"))
    outcome = execute(first, Training(), workspace, skip_existing=True, tags={"role": "start"})
    if not outcome.ok:
        raise DataError(f"train.init_from={config.train.init_from}: the starting run failed")
    return find_start(config, workspace.out_dir)


def evaluate_checkpoint(
    checkpoint: Path,
    *,
    dataset: str | None = None,
    suites: Sequence[str] = ("robustness",),
    attacks: Sequence[str] = (),
    overrides: Sequence[str] | Mapping[str, Mapping[str, Any]] = (),
    workspace: Workspace = Workspace(),
    skip_existing: bool = False,
    tags: Mapping[str, Any] | None = None,
) -> RunOutcome:
    """Evaluate a saved model without retraining and write one Parquet file of results.

    Rows carry the training run's key as `extra.checkpoint_key`, so the leaderboard can tie the
    evaluation to the run that produced the weights. Suites this evaluation already wrote
    completely are kept, so a rerun after a failure measures only what is missing."""
    payload = load_checkpoint(checkpoint)
    config = checkpoint_config(payload["config"], dataset=dataset, suites=suites, attacks=attacks,
                               overrides=overrides)
    return execute(config, FromCheckpoint(payload, Path(checkpoint)), workspace, skip_existing=skip_existing, tags=tags)
