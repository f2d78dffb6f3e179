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
from benchmark.checkpoint import load_checkpoint, save_checkpoint
from benchmark.config import RUN_PREFIX, RunConfig, from_dict, resolve
from benchmark.dataset import BenchmarkDataset
from benchmark.distributed import World
from benchmark.engine.evaluate import check_suites, evaluate
from benchmark.engine.saving import ResultsWriter, log_tracebacks, training_measurements, write_results
from benchmark.engine.start import StartPoint, find_start, load_start, start_run
from benchmark.engine.train import DIVERGENCE_RATIO, Checkpointing, TrainResult, train
from benchmark.engine.trained import build, checkpoint_config, load_trained, seeded, trained_by, trained_earlier
from benchmark.errors import DataError
from benchmark.method import Method
from benchmark.models import Classifier
from benchmark.progress import Reporter
from benchmark.registry import SUITES
from benchmark.results.kept import completed_run_id, finished_pieces, finished_suites
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


@dataclass(frozen=True)
class Training:
    """How `execute` obtains trained weights when it trains (`benchmark run`)."""

    resume: bool = True  # continue a resume checkpoint, reuse a finished checkpoint of this key
    checkpoint_every: int | None = None


def run(
    method: str,
    dataset: str,
    *,
    profile: str = "quick",
    seed: int = 0,
    overrides: Sequence[str] | Mapping[str, Mapping[str, Any]] = (),
    data_root: Path | None = None,
    out_dir: Path = Path("results"),
    device: str = "auto",
    reporter: Reporter | None = None,
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
    return execute(config, Training(resume, checkpoint_every), data_root=data_root, out_dir=out_dir,
                   device=device, reporter=reporter, skip_existing=skip_existing, tags=tags)


@dataclass(frozen=True)
class AsGiven:
    """Weights that come with the model (one trained elsewhere): nothing is trained or loaded."""

    model: Classifier | None = None  # None: the model the config builds (e.g. model.encoder=external)
    trained_by: str = "external"  # what the rows' train_commit says


def execute(config: RunConfig, weights: Training | Mapping[str, Any] | AsGiven, *, data_root: Path | None,
            out_dir: Path, device: str, reporter: Reporter | None, skip_existing: bool = False,
            tags: Mapping[str, Any] | None = None, checkpoint: Path | None = None) -> RunOutcome:
    """The one path of a run: build, check, lock, obtain weights (train; load the checkpoint
    `payload` given as `weights`; or take the model as given), evaluate what is missing, write
    the results file.

    Bad input fails before the lock is taken or anything is written. A failing suite is recorded
    and the others still run; an interrupted evaluation writes what finished, then re-raises."""
    reporter = reporter or Reporter(quiet=True)
    training = weights if isinstance(weights, Training) else None
    given = weights if isinstance(weights, AsGiven) else None
    payload: Mapping[str, Any] = weights if isinstance(weights, Mapping) else {}
    files = RunFiles.of(config, out_dir)
    key = config.key()
    dev = provenance.resolve_device(device)
    world = World.from_env(dev)
    if world.size > 1:  # torchrun: one device per rank; only rank 0 talks, locks and writes
        dev = torch.device("cuda", world.local_rank) if dev.type == "cuda" else dev
        reporter = reporter if world.main else Reporter(quiet=True, warnings=False)
    created = provenance.now()
    with seeded(config.seed, dev):
        ds, method_obj, model = build(config, data_root, model=given.model if given else None)
        if training is None and given is None:
            load_trained(model, method_obj, payload, checkpoint, config.dataset)
        ds.check(training=training is not None)
        check_suites(config, ds)  # bad input fails before anything, even the lock, is written
        for note in ds.notes:
            reporter.log(f"  {note}")
        start = None
        if training is not None and config.start is not None and not files.checkpoint.is_file():
            start = starting_point(config, training, data_root=data_root, out_dir=out_dir, device=device,
                                   reporter=reporter)
        with files.claimed(key, reporter) if world.main else contextlib.nullcontext():
            # rank 0 reads the folder for every rank (nodes may not share it)
            done, has_checkpoint = world.decide((completed_run_id(files.results, key), files.checkpoint.is_file())
                                                if world.main else None)
            if skip_existing and done and (training is None or has_checkpoint):
                return RunOutcome(config, done, files.results, files.checkpoint if training else None, [],
                                  skipped=True)
            model.to(dev)
            what = "" if training else ("model " if given else "checkpoint ")
            where = provenance.device_name(dev, world.size)
            reporter.log(Text.assemble((config.method_name, "bold"), f" {what}on ", (config.dataset, "bold"),
                                       f" ({config.profile}, seed {config.seed}, {where})"))
            measurements: list[Measurement] = []
            result = None
            if training is not None:
                result = obtain_weights(model, method_obj, ds, config, dev, reporter, files, training, start, world)
                measurements += training_measurements(result)
            diverged = warn_if_diverged(config, result.history if result else payload.get("history", []), reporter)
            reusable = world.main and (training is None or training.resume)
            kept, todo, pieces = what_is_left(config, files, world, reusable, reporter)
            train_commit = result.train_commit if result else (given.trained_by if given else trained_by(payload))
            marks = row_marks(payload if training is None and checkpoint is not None else None,
                              result.init_from if result else payload.get("init_from"), tags)
            writer = ResultsWriter(files, partial(write_results, config=config, created=created, device=dev,
                                                  data_source=ds.source(), train_commit=train_commit, ranks=world.size),
                                   config.eval.suites, todo, measurements, kept, marks, diverged)
            evaluation = evaluate(model, ds, config, dev, reporter, artifacts_dir=files.artifacts, suites=todo,
                                  world=world, finished=pieces, progress=writer.save if world.main else None)
            if not world.main:  # every rank evaluated its share; rank 0 writes
                return RunOutcome(config, "", files.results, None, [], failures=evaluation.failures)
            # after the last suite the progress write is the final file, unless Ctrl-C came first
            path = writer.save(evaluation, {}) if evaluation.interrupted or not todo else files.results
            measurements = writer.rows(evaluation)
            if evaluation.tracebacks:
                log_tracebacks(files, evaluation.tracebacks)
            if evaluation.interrupted:
                raise KeyboardInterrupt
    return RunOutcome(config, provenance.run_id(key, created), path, files.checkpoint if training else None,
                      measurements, resumed_from_step=result.resumed_from_step if result else None,
                      failures=evaluation.failures, reused_suites=tuple(kept))


def warn_if_diverged(config: RunConfig, history: list[dict[str, float]], reporter: Reporter) -> bool:
    """Whether the training diverged (its final loss over DIVERGENCE_RATIO times its first); one
    warning line, even under --quiet, when it did."""
    diverged = TrainResult(history, 0.0, []).diverged
    if diverged:
        reporter.warn(f"{config.method_name} on {config.dataset} (seed {config.seed}) diverged: the final "
                      f"training loss is over {DIVERGENCE_RATIO:g} times the first; every row is flagged "
                      "`diverged`, and boards show it without ranking it")
    return diverged


def what_is_left(config: RunConfig, files: RunFiles, world: World, reusable: bool,
                 reporter: Reporter) -> tuple[dict[str, list[Measurement]], list[str], dict]:
    """The suites the results file already holds complete (kept), the suites to evaluate, and
    the finished pieces of those; rank 0 reads the folder and tells every rank."""
    produces = {s: SUITES.get(s).row_suites() for s in config.eval.suites}
    kept = finished_suites(files.results, config.key(), produces) if reusable else {}
    if kept:
        reporter.log(f"  keeping the finished suites {', '.join(kept)} of {files.results}")
    todo = world.decide([s for s in config.eval.suites if s not in kept])
    pieces = finished_pieces(files.pieces, config.key()) if reusable else {}
    pieces = world.decide({s: p for s, p in pieces.items() if s in todo} if world.main else None)
    return kept, todo, pieces


def row_marks(evaluated_checkpoint: Mapping[str, Any] | None, started_from: str | None,
              tags: Mapping[str, Any] | None) -> dict[str, Any]:
    """What every row's `extra` carries: the run key of an evaluated checkpoint, the checkpoint
    training started from, and the caller's tags."""
    marks: dict[str, Any] = {}
    if evaluated_checkpoint is not None:
        marks["checkpoint_key"] = evaluated_checkpoint.get("run_key") or from_dict(evaluated_checkpoint["config"]).key()
    if started_from:
        marks["init_from"] = started_from
    return {**marks, **(tags or {})}


def obtain_weights(model: Classifier, method: Method, ds: BenchmarkDataset, config: RunConfig, dev: torch.device,
                   reporter: Reporter, files: RunFiles, training: Training, start: StartPoint | None,
                   world: World = World()) -> TrainResult:
    """Reuse this config's finished checkpoint (with `resume`), or train (from `start`'s weights
    when given) and write one."""
    key = config.key()
    result = trained_earlier(files.checkpoint, key, model, method, reporter) if training.resume else None
    if result is None:
        if not training.resume and world.main:
            files.resume.unlink(missing_ok=True)
        if start is None and config.start is not None:  # the checkpoint went missing under the lock
            start = find_start(config, files.out_dir)
        if start is not None:
            load_start(model, start)
            reporter.log(f"  starting from the weights of {start.path}")
        result = train(model, method, ds, config, dev, reporter,
                       Checkpointing(files.resume, every_steps=training.checkpoint_every), world)
        result.train_commit = provenance.git_commit()
        result.init_from = start.run_key if start else None
        if not world.main:
            return result
        save_checkpoint(files.checkpoint, model=model, method_state=method.state_dict(),
                        config_json=config.to_json(), history=result.history, run_key=key,
                        train_duration_s=result.duration_s, train_commit=result.train_commit,
                        train_versions=provenance.versions_json(), init_from=result.init_from)
    files.resume.unlink(missing_ok=True)
    return result


def starting_point(config: RunConfig, training: Training, *, data_root: Path | None, out_dir: Path, device: str,
                   reporter: Reporter) -> StartPoint:
    """The weights `config` starts from; a missing `run:<method>` is trained first (once: a
    second run finds it, a killed one resumes it), its rows marked `extra.role = "start"`."""
    try:
        return find_start(config, out_dir)
    except DataError:
        if not (config.train.init_from or "").startswith(RUN_PREFIX):
            raise
    first = start_run(config)
    reporter.log(Text.assemble("  starting run: ", (first.method, "bold"), f" for {first.train.epochs} epoch(s), "
                               "trained once and shared by every run that starts from it"))
    outcome = execute(first, training, data_root=data_root, out_dir=out_dir, device=device, reporter=reporter,
                      skip_existing=True, tags={"role": "start"})
    if not outcome.ok:
        raise DataError(f"train.init_from={config.train.init_from}: the starting run failed")
    return find_start(config, out_dir)


def evaluate_checkpoint(
    checkpoint: Path,
    *,
    dataset: str | None = None,
    suites: Sequence[str] = ("robustness",),
    attacks: Sequence[str] = (),
    overrides: Sequence[str] | Mapping[str, Mapping[str, Any]] = (),
    data_root: Path | None = None,
    out_dir: Path = Path("results"),
    device: str = "auto",
    reporter: Reporter | None = None,
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
    return execute(config, payload, data_root=data_root, out_dir=out_dir, device=device, reporter=reporter,
                   skip_existing=skip_existing, tags=tags, checkpoint=Path(checkpoint))
