"""Starting weights (`train.init_from`): a run that begins from the weights of a finished run.

The paper trains COCO methods after a 100-epoch vanilla pre-training and ISIC methods from a
vanilla ISIC checkpoint; every method of a comparison should start from the same weights, trained
once. `train.init_from` names them: `run:<method>` (the finished run of that method on the same
dataset, profile and seed with the same training settings, found in the output folder by its
training key; config.start_config says which run that is) or a checkpoint file. Only the encoder
(its head included) is taken; the optimiser and the method's own state start
fresh, so H-SPLID initialises its mask from the loaded encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from benchmark.checkpoint import finished_checkpoint, load_checkpoint
from benchmark.config import CARRIED_SECTIONS, RUN_PREFIX, RunConfig, start_config, training_key
from benchmark.errors import DataError


@dataclass(frozen=True)
class StartPoint:
    """A finished checkpoint a run starts from."""

    path: Path
    payload: Mapping[str, Any]

    @property
    def training_key(self) -> str:
        return training_key(self.payload["config"])

    @property
    def run_key(self) -> str:
        return str(self.payload.get("run_key") or "")

    @property
    def trained(self) -> Mapping[str, Any]:
        return self.payload["config"]["run"]


def checkpoint_start(path: str | Path, dataset: str) -> StartPoint:
    """A checkpoint file named by `train.init_from`, refused in one line unless it is a finished
    checkpoint trained on `dataset` (benchmark.checkpoint.finished_checkpoint)."""
    return StartPoint(Path(path).expanduser(), finished_checkpoint(path, dataset))


def find_start(config: RunConfig, out_dir: Path) -> StartPoint:
    """The checkpoint `config` starts from, checked against the run's model (one-line DataError)."""
    init_from = config.train.init_from
    assert init_from is not None and config.start is not None, "only runs with train.init_from have a start"
    if init_from.startswith(RUN_PREFIX):
        start = finished_run(config, out_dir)
    else:
        start = checkpoint_start(init_from, config.dataset)
        if start.training_key != config.start:
            raise DataError(f"train.init_from: {str(start.path)!r} changed since this run was configured "
                            f"(training key {start.training_key}, expected {config.start})")
    check_fits(config, start)
    return start


def finished_run(config: RunConfig, out_dir: Path) -> StartPoint:
    """The finished checkpoint in `out_dir` whose training is the one `run:<method>` names."""
    init_from = config.train.init_from or ""
    method = init_from[len(RUN_PREFIX):].strip()
    stem = f"{method}__{config.dataset}__{config.profile}__seed{config.seed}__"
    for path in sorted((Path(out_dir) / "checkpoints").glob(f"{stem}*.pt")):
        if path.name.endswith(".resume.pt") or path.name.startswith("."):
            continue
        try:
            payload = load_checkpoint(path)
        except DataError:
            continue
        if payload.get("kind") == "final" and training_key(payload["config"]) == config.start:
            return StartPoint(path, payload)
    raise DataError(f"train.init_from={init_from}: no finished {method} run of {config.dataset} ({config.profile}, "
                    f"seed {config.seed}) with these training settings in {str(Path(out_dir) / 'checkpoints')!r}; "
                    f"`benchmark run` and `benchmark sweep` train it first (expected config key "
                    f"{start_run(config).key()})")


def start_run(config: RunConfig) -> RunConfig:
    """The config of the run that `config`'s `run:<method>` names (what is trained when it is missing)."""
    return start_config(config.train.init_from or "", config.dataset, config.profile, config.seed, carried(config))


def carried(config: RunConfig) -> dict[str, dict[str, Any]]:
    """The sections of a resolved config that its starting run shares (as override layers)."""
    return {k: v for k, v in config.to_dict().items() if k in CARRIED_SECTIONS}


def check_fits(config: RunConfig, start: StartPoint) -> None:
    """The starting weights come from the same encoder, with the same options."""
    saved = start.payload["config"].get("model", {"encoder": "lenet3"})
    mine = config.to_dict()["model"]
    if saved.get("encoder") != mine["encoder"] or saved.get("options", {}) != mine["options"]:
        raise DataError(f"train.init_from: {str(start.path)!r} holds a {saved.get('encoder')!r} encoder with options "
                        f"{saved.get('options', {})}; this run builds {mine['encoder']!r} with {mine['options']}")


def load_start(model: torch.nn.Module, start: StartPoint) -> None:
    """Copy the encoder's weights, its head included, into `model` (a one-line DataError when a
    tensor is missing or has another shape: another architecture or another number of classes)."""
    weights = start.payload["model"]
    own = {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    for name, tensor in own.items():
        if name not in weights or weights[name].shape != tensor.shape:
            what = "lacks" if name not in weights else f"has shape {tuple(weights[name].shape)} for"
            head = name.startswith("encoder.classifier.")
            raise DataError(f"train.init_from: {str(start.path)!r} {what} {name} (this run: {tuple(tensor.shape)})"
                            + ("; another number of classes" if head else "; another architecture"))
    model.load_state_dict({k: weights[k] for k in own}, strict=False)
