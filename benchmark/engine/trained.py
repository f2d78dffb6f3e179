"""What a run is made of and the weights it uses: the dataset, method and model built from a
config (seeded), and trained weights used again (a finished checkpoint reused by a rerun, a
checkpoint restored or evaluated on other suites or datasets), with the checks that keep stale or
broken weights out (another model shape, non-finite values)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from benchmark import provenance
from benchmark.checkpoint import load_checkpoint
from benchmark.config import RunConfig, from_dict, resolve
from benchmark.config.values import as_layers, merge_layers
from benchmark.dataset import BenchmarkDataset
from benchmark.engine.train import TrainResult, non_finite
from benchmark.errors import ConfigError, DataError
from benchmark.method import Method
from benchmark.models import Classifier, build_model_encoder
from benchmark.progress import Reporter
from benchmark.registry import ATTACKS, DATASETS, METHODS, SUITES


def build(config: RunConfig, data_root: Path | None,
          model: Classifier | None = None) -> tuple[BenchmarkDataset, Method, Classifier]:
    """The dataset, the method and a freshly initialised model (global RNG as the caller seeded
    it), or `model` when one is given (a model built elsewhere)."""
    dataset = DATASETS.get(config.dataset)(config.dataset_params, data_root)
    method = METHODS.get(config.method)(config.method_params, dataset.info)
    if model is None:
        model = method.build_model(build_model_encoder(config.model, dataset.info))
    return dataset, method, model


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Seed torch's global RNG inside the block and restore the caller's state afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


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
    return TrainResult(payload["history"], float(payload.get("train_duration_s", 0.0)), method.trace(),
                       train_commit=trained_by(payload), init_from=payload.get("init_from"))


def trained_by(payload: Mapping[str, Any]) -> str:
    """The commit that trained a checkpoint's weights, as far as the checkpoint says."""
    return str(payload.get("train_commit") or "unknown (checkpoint without train_commit)")


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


def load_trained(model: Classifier, method: Method, payload: Mapping[str, Any], checkpoint: Path | None,
                 dataset: str) -> None:
    """Load weights and method state; a model of another shape is a one-line DataError."""
    trained_on = payload["config"]["run"]["dataset"]
    where = f"checkpoint {str(checkpoint)!r}" if checkpoint else "the checkpoint"
    bad = non_finite(payload["model"])
    if bad:
        raise DataError(f"{where} holds non-finite weights ({bad[0]} and {len(bad) - 1} more): "
                        "a diverged training; it is never evaluated")
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise DataError(f"{where} (trained on {trained_on}) does not fit a model for "
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
    user = as_layers(overrides)
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
                       overrides=layer, start=run_info.get("start"))

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
