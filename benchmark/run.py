"""One benchmark run: resolve the config, train, checkpoint, evaluate, write the Parquet file."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from rich.text import Text

from . import provenance
from .checkpoint import load_checkpoint, save_checkpoint
from .config import RunConfig, from_dict, merge_layers, parse_overrides, resolve
from .data import BenchmarkDataset
from .evaluate import check_suites, evaluate
from .method import Method
from .models import Classifier, build_encoder
from .progress import Reporter
from .errors import ConfigError, DataError
from .registry import ATTACKS, DATASETS, METHODS, SUITES
from .files import exclusive, remove_temporaries
from .store import Measurement, completed_run_id, finished_suites, run_file_name, to_rows, write_run
from .train import DIVERGENCE_RATIO, Checkpointing, TrainResult, non_finite, train


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
class RunFiles:
    """Where one run's outputs live in a results folder, all named by the run's stem."""

    out_dir: Path
    stem: str

    @property
    def results(self) -> Path:
        return self.out_dir / f"{self.stem}.parquet"

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / "checkpoints" / f"{self.stem}.pt"

    @property
    def resume(self) -> Path:
        return self.out_dir / "checkpoints" / f"{self.stem}.resume.pt"

    @property
    def artifacts(self) -> Path:
        return self.out_dir / "artifacts" / self.stem

    @contextlib.contextmanager
    def claimed(self, run_key: str, reporter: Reporter):
        """Hold this run's lock (other processes running the same config wait), after clearing
        what a killed writer may have left."""
        def waiting():
            reporter.log(f"  waiting: another process is running {self.stem}")

        with exclusive(self.out_dir / ".locks" / f"{run_key}.lock", on_wait=waiting):
            for path in (self.results, self.checkpoint, self.resume):
                remove_temporaries(path)
            yield self

    @classmethod
    def of(cls, config: RunConfig, out_dir: Path) -> "RunFiles":
        name = run_file_name(config.method, config.dataset, config.profile, config.seed, config.key())
        return cls(Path(out_dir), Path(name).stem)


def build(config: RunConfig, data_root: Path | None) -> tuple[BenchmarkDataset, Method, Classifier]:
    """The dataset, the method and a freshly initialised model (global RNG as the caller seeded it)."""
    dataset = DATASETS.get(config.dataset)(config.dataset_params, data_root)
    method = METHODS.get(config.method)(config.method_params, dataset.info)
    model = method.build_model(build_encoder(dataset.info))
    return dataset, method, model


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Seed torch's global RNG inside the block and restore the caller's state afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


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


def execute(config: RunConfig, weights: Training | Mapping[str, Any], *, data_root: Path | None, out_dir: Path,
            device: str, reporter: Reporter | None, skip_existing: bool = False,
            tags: Mapping[str, Any] | None = None, checkpoint: Path | None = None) -> RunOutcome:
    """The one path of a run: build, check, lock, obtain weights (train, or load the checkpoint
    `payload` given as `weights`), evaluate what is missing, write the results file.

    Bad input fails before the lock is taken or anything is written. A failing suite is recorded
    and the others still run; an interrupted evaluation writes what finished, then re-raises."""
    reporter = reporter or Reporter(quiet=True)
    training = weights if isinstance(weights, Training) else None
    files = RunFiles.of(config, out_dir)
    key = config.key()
    dev = provenance.resolve_device(device)
    created = provenance.now()
    with seeded(config.seed, dev):
        ds, method_obj, model = build(config, data_root)
        if training is None:
            load_trained(model, method_obj, weights, checkpoint, config.dataset)
        ds.check()
        check_suites(config, ds)  # bad input fails before anything, even the lock, is written
        for note in ds.notes:
            reporter.log(f"  {note}")
        with files.claimed(key, reporter):
            done = completed_run_id(files.results, key)
            if skip_existing and done and (training is None or files.checkpoint.is_file()):
                return RunOutcome(config, done, files.results, files.checkpoint if training else None, [],
                                  skipped=True)
            model.to(dev)
            what = "checkpoint " if training is None else ""
            reporter.log(Text.assemble((config.method, "bold"), f" {what}on ", (config.dataset, "bold"),
                                       f" ({config.profile}, seed {config.seed}, {provenance.device_name(dev)})"))
            measurements: list[Measurement] = []
            result = None
            if training is not None:
                result = obtain_weights(model, method_obj, ds, config, dev, reporter, files, training)
                measurements += training_measurements(result)
            history = result.history if result else weights.get("history", [])
            diverged = TrainResult(history, 0.0, []).diverged
            if diverged:
                reporter.log(Text.assemble("  ", ("warning", "yellow"), f": the final training loss is over "
                                           f"{DIVERGENCE_RATIO:g} times the first; every row of this run is flagged "
                                           "`diverged`"))
            produces = {s: SUITES.get(s).row_suites() for s in config.eval.suites}
            kept = finished_suites(files.results, key, produces) if training is None or training.resume else {}
            if kept:
                reporter.log(f"  keeping the finished suites {', '.join(kept)} of {files.results}")
            todo = [s for s in config.eval.suites if s not in kept]
            evaluation = evaluate(model, ds, config, dev, reporter, artifacts_dir=files.artifacts, suites=todo)
            for suite in config.eval.suites:  # the results file keeps the configured suite order
                measurements += kept.get(suite, []) + evaluation.by_suite.get(suite, [])
            if training is None and checkpoint is not None:
                tagged(measurements, {"checkpoint_key": from_dict(weights["config"]).key()})
            if diverged:
                for m in measurements:
                    m.flags = tuple(dict.fromkeys([*m.flags, "diverged"]))
            run_id = f"{key}-{created.strftime('%Y%m%dT%H%M%S%fZ')}"
            path = write_results(tagged(measurements, tags), config, run_id, created, dev, ds.source(), files.results)
            if evaluation.tracebacks:
                log_tracebacks(files, evaluation.tracebacks)
            if evaluation.interrupted:
                raise KeyboardInterrupt
    return RunOutcome(config, run_id, path, files.checkpoint if training else None, measurements,
                      resumed_from_step=result.resumed_from_step if result else None,
                      failures=evaluation.failures, reused_suites=tuple(kept))


def obtain_weights(model: Classifier, method: Method, ds: BenchmarkDataset, config: RunConfig, dev: torch.device,
                   reporter: Reporter, files: "RunFiles", training: Training) -> TrainResult:
    """Reuse this config's finished checkpoint (with `resume`), or train and write one."""
    key = config.key()
    result = trained_earlier(files.checkpoint, key, model, method, reporter) if training.resume else None
    if result is None:
        if not training.resume:
            files.resume.unlink(missing_ok=True)
        result = train(model, method, ds, config, dev, reporter,
                       Checkpointing(files.resume, every_steps=training.checkpoint_every))
        save_checkpoint(files.checkpoint, model=model, method_state=method.state_dict(),
                        config_json=config.to_json(), history=result.history, run_key=key,
                        train_duration_s=result.duration_s)
    files.resume.unlink(missing_ok=True)
    return result


def log_tracebacks(files: "RunFiles", tracebacks: Mapping[str, str]) -> Path:
    """The full tracebacks of failed suites, for the one-line reasons the console and rows show."""
    log = files.out_dir / "logs" / f"{files.stem}.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        for suite, text in tracebacks.items():
            fh.write(f"suite {suite} ({provenance.now().isoformat()}):\n{text}\n")
    return log


def trained_earlier(checkpoint: Path, run_key: str, model: Classifier, method: Method,
                    reporter: Reporter) -> TrainResult | None:
    """Load a finished checkpoint of this very config (same key) into model and method; its
    training record, or None when there is no such checkpoint."""
    if not checkpoint.is_file():
        return None
    try:
        payload = load_checkpoint(checkpoint)
    except DataError as err:
        reporter.log(f"  ignoring {err}; training again")
        return None
    if payload.get("kind") != "final" or payload.get("run_key") != run_key:
        return None
    try:
        load_trained(model, method, payload, checkpoint, payload["config"]["run"]["dataset"])
    except DataError as err:
        reporter.log(f"  ignoring {err}; training again")
        return None
    reporter.log(f"  reusing the trained weights in {checkpoint} (same config key; --fresh trains again)")
    return TrainResult(payload["history"], float(payload.get("train_duration_s", 0.0)), method.trace())


def tagged(measurements: list[Measurement], tags: Mapping[str, Any] | None) -> list[Measurement]:
    if tags:
        for m in measurements:
            m.extra = {**m.extra, **tags}
    return measurements


def write_results(measurements: list[Measurement], config: RunConfig, run_id: str, created, device: torch.device,
                  data_source: str, path: Path) -> Path:
    run_columns = {
        "run_id": run_id,
        "run_key": config.key(),
        "config_key": config.key(with_seed=False),
        "method": config.method,
        "dataset": config.dataset,
        "profile": config.profile,
        "seed": config.seed,
        "config": config.to_json(),
        "git_commit": provenance.git_commit(),
        "versions": provenance.versions_json(),
        "device": provenance.device_name(device),
        "data_source": data_source,
        "created": created,
    }
    return write_run(to_rows(measurements, run_columns), path)


def training_measurements(result: TrainResult) -> list[Measurement]:
    """The training history (per epoch) and the method's trace (per sample count) as 'training' rows."""
    rows = []
    for record in result.history:
        epoch = int(record["epoch"])
        for name, value in record.items():
            if name != "epoch":
                rows.append(Measurement("training", name, float(value), 0, eval_set="train", extra={"epoch": epoch}))
    for record in result.trace:
        seen = int(record["samples_seen"])
        for name, value in record.items():
            if name != "samples_seen":
                rows.append(Measurement("training", name, float(value), 0, eval_set="train",
                                        extra={"samples_seen": seen}))
    rows.append(Measurement("training", "total_duration_s", result.duration_s, 0, eval_set="train"))
    return rows


def restore(checkpoint: Path, *, data_root: Path | None = None, device: str = "auto",
            overrides: Mapping[str, Mapping[str, Any]] | None = None
            ) -> tuple[RunConfig, BenchmarkDataset, Method, Classifier, torch.device]:
    """Rebuild dataset, method and trained model from a checkpoint (config overrides allowed)."""
    payload = load_checkpoint(checkpoint)
    saved = payload["config"]
    config = from_dict(merge_layers(saved, overrides or {}) | {"run": saved["run"]})
    dev = provenance.resolve_device(device)
    with seeded(config.seed, dev):
        ds, method, model = build(config, data_root)
    load_trained(model, method, payload, checkpoint, config.dataset)
    return config, ds, method, model.to(dev), dev


def load_trained(model: Classifier, method: Method, payload: Mapping[str, Any], checkpoint: Path,
                 dataset: str) -> None:
    """Load weights and method state; a model of another shape is a one-line DataError."""
    trained_on = payload["config"]["run"]["dataset"]
    bad = non_finite(payload["model"])
    if bad:
        raise DataError(f"checkpoint {str(checkpoint)!r} holds non-finite weights ({bad[0]} and {len(bad) - 1} more): "
                        "a diverged training; it is never evaluated")
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise DataError(f"checkpoint {str(checkpoint)!r} (trained on {trained_on}) does not fit a model for "
                        f"dataset {dataset!r}: {first}") from None
    method.load_state_dict(payload["method_state"])


FROZEN_SECTIONS = ("train",)  # what trained the weights; evaluating cannot change it


def checkpoint_config(saved: Mapping[str, Any], *, dataset: str | None = None,
                      suites: Sequence[str] = ("robustness",), attacks: Sequence[str] = (),
                      overrides: Sequence[str] | Mapping[str, Mapping[str, Any]] = ()) -> RunConfig:
    """The configuration that evaluates a trained model: the saved method and training settings,
    the target dataset's settings (the saved ones when it is the training dataset), the chosen
    suites, and `attacks` replacing the robustness grid's attacks (an attack the grid lacks gets
    the regions and eps values of the grid's first attack)."""
    run_info = saved["run"]
    user = parse_overrides(overrides) if not isinstance(overrides, Mapping) else {k: dict(v) for k, v in overrides.items()}
    frozen = [f"{s}.{k}" for s in FROZEN_SECTIONS for k in user.get(s, {})]
    if frozen:
        raise ConfigError(f"{frozen[0]} describes how the checkpoint was trained and cannot change when "
                          "evaluating it; train a new model with `benchmark run` instead")
    target = dataset or run_info["dataset"]
    if not suites:
        raise ConfigError("expected at least one suite to evaluate, e.g. --suite robustness")
    for name in suites:
        SUITES.get(name)
    kept = ("train", "method") if target != run_info["dataset"] else tuple(k for k in saved if k != "run")
    layers = {k: v for k, v in saved.items() if k in kept and (k not in SUITES or k in suites)}
    base = merge_layers(layers, {"eval": {"suites": tuple(suites)}}, user)

    def resolved(layer):
        return resolve(run_info["method"], target, profile=run_info["profile"], seed=run_info["seed"],
                       overrides=layer)

    config = resolved(base)
    if attacks:
        if "robustness" not in suites:
            raise ConfigError("--attack needs the robustness suite among the evaluated suites")
        grid = config.suite("robustness").grid
        template = next(iter(grid.values()), None)
        if template is None:
            raise ConfigError("the robustness grid is empty; set regions with --set robustness.grid=...")
        for name in attacks:
            ATTACKS.get(name)
        config = resolved(merge_layers(base, {"robustness": {"grid": {a: grid.get(a, template) for a in attacks}}}))
    return config


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
