"""One benchmark run: resolve the config, train, checkpoint, evaluate, write the Parquet file."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

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
from .store import Measurement, completed_run_id, run_file_name, to_rows, write_run
from .train import Checkpointing, TrainResult, train


@dataclass
class RunOutcome:
    config: RunConfig
    run_id: str
    results_path: Path
    checkpoint_path: Path | None
    measurements: list[Measurement]
    skipped: bool = False  # its results were already there (skip_existing)
    resumed_from_step: int | None = None  # training continued from a resume checkpoint at this step


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
    epoch ends and every `checkpoint_every` steps), and a finished checkpoint is evaluated without
    training again. With `skip_existing`, a run whose results and checkpoint exist does nothing.
    `tags` join every row's `extra`."""
    reporter = reporter or Reporter(quiet=True)
    config = resolve(method, dataset, profile=profile, seed=seed, overrides=overrides)
    files = RunFiles.of(config, out_dir)
    key = config.key()
    dev = provenance.resolve_device(device)
    created = provenance.now()
    with seeded(seed, dev):
        ds, method_obj, model = build(config, data_root)
        ds.check()
        check_suites(config, ds)  # bad input fails before anything, even the lock, is written
        with files.claimed(key, reporter):
            if skip_existing and files.checkpoint.is_file() and (done := completed_run_id(files.results, key)):
                return RunOutcome(config, done, files.results, files.checkpoint, [], skipped=True)
            if not resume:
                files.resume.unlink(missing_ok=True)
            model.to(dev)
            reporter.log(f"[bold]{method}[/] on [bold]{dataset}[/] ({profile}, seed {seed}, "
                         f"{provenance.device_name(dev)})")
            result = trained_earlier(files.checkpoint, key, model, method_obj, reporter) if resume else None
            if result is None:
                result = train(model, method_obj, ds, config, dev, reporter,
                               Checkpointing(files.resume, every_steps=checkpoint_every))
                save_checkpoint(files.checkpoint, model=model, method_state=method_obj.state_dict(),
                                config_json=config.to_json(), history=result.history, run_key=key,
                                train_duration_s=result.duration_s)
            files.resume.unlink(missing_ok=True)
            measurements = training_measurements(result) + evaluate(model, ds, config, dev, reporter,
                                                                    artifacts_dir=files.artifacts)
            run_id = f"{key}-{created.strftime('%Y%m%dT%H%M%S%fZ')}"
            path = write_results(tagged(measurements, tags), config, run_id, created, dev, ds.source(),
                                 files.results)
    return RunOutcome(config, run_id, path, files.checkpoint, measurements,
                      resumed_from_step=result.resumed_from_step)


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
    load_trained(model, method, payload, checkpoint, payload["config"]["run"]["dataset"])
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
    evaluation to the run that produced the weights."""
    reporter = reporter or Reporter(quiet=True)
    payload = load_checkpoint(checkpoint)
    trained_key = from_dict(payload["config"]).key()
    config = checkpoint_config(payload["config"], dataset=dataset, suites=suites, attacks=attacks,
                               overrides=overrides)
    files = RunFiles.of(config, out_dir)
    key = config.key()
    dev = provenance.resolve_device(device)
    created = provenance.now()
    with seeded(config.seed, dev):
        ds, method, model = build(config, data_root)
        load_trained(model, method, payload, checkpoint, config.dataset)
        ds.check()
        check_suites(config, ds)
        with files.claimed(key, reporter):
            if skip_existing and (done := completed_run_id(files.results, key)):
                return RunOutcome(config, done, files.results, None, [], skipped=True)
            model.to(dev)
            reporter.log(f"[bold]{config.method}[/] checkpoint on [bold]{config.dataset}[/] "
                         f"({', '.join(config.eval.suites)}; {provenance.device_name(dev)})")
            measurements = evaluate(model, ds, config, dev, reporter, artifacts_dir=files.artifacts)
            tagged(measurements, {"checkpoint_key": trained_key, **(tags or {})})
            run_id = f"{key}-{created.strftime('%Y%m%dT%H%M%S%fZ')}"
            path = write_results(measurements, config, run_id, created, dev, ds.source(), files.results)
    return RunOutcome(config, run_id, path, None, measurements)
