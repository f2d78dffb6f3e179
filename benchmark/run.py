"""One benchmark run: resolve the config, train, checkpoint, evaluate, write the Parquet file."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from . import provenance
from .checkpoint import load_checkpoint, save_checkpoint
from .config import RunConfig, from_dict, merge_layers, resolve
from .data import BenchmarkDataset
from .evaluate import evaluate
from .method import Method
from .models import Classifier, build_encoder
from .progress import Reporter
from .registry import DATASETS, METHODS
from .store import Measurement, run_file_name, to_rows, write_run
from .train import TrainResult, train


@dataclass
class RunOutcome:
    config: RunConfig
    run_id: str
    results_path: Path
    checkpoint_path: Path | None
    measurements: list[Measurement]


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
) -> RunOutcome:
    """Train `method` on `dataset`, evaluate it and write one Parquet file of results."""
    reporter = reporter or Reporter(quiet=True)
    config = resolve(method, dataset, profile=profile, seed=seed, overrides=overrides)
    dev = provenance.resolve_device(device)
    created = provenance.now()
    stem = Path(run_file_name(method, dataset, profile, seed, config.key())).stem
    with seeded(seed, dev):
        ds, method_obj, model = build(config, data_root)
        ds.check()
        model.to(dev)
        reporter.log(f"[bold]{method}[/] on [bold]{dataset}[/] ({profile}, seed {seed}, {provenance.device_name(dev)})")
        result = train(model, method_obj, ds, config, dev, reporter)
        checkpoint = save_checkpoint(out_dir / "checkpoints" / f"{stem}.pt", model=model,
                                     method_state=method_obj.state_dict(), config_json=config.to_json(),
                                     history=result.history)
        measurements = training_measurements(result) + evaluate(
            model, ds, config, dev, reporter, artifacts_dir=out_dir / "artifacts" / stem
        )
    run_id = f"{config.key()}-{created.strftime('%Y%m%dT%H%M%S%fZ')}"
    path = write_results(measurements, config, run_id, created, dev, ds.source(), out_dir / f"{stem}.parquet")
    return RunOutcome(config, run_id, path, checkpoint, measurements)


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
    model.load_state_dict(payload["model"])
    method.load_state_dict(payload["method_state"])
    return config, ds, method, model.to(dev), dev
