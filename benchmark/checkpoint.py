"""Checkpoints: weights, method state and the resolved config, loadable with weights_only=True.

Two kinds share one format: the final checkpoint of a trained model (`save_checkpoint`), and the
resume checkpoint that an unfinished training run writes as it goes (`save_resume`): everything
needed to continue exactly where it stopped, so a run killed mid-training ends with the numbers an
uninterrupted run would have produced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import DataError
from benchmark.files import write_atomically

FORMAT = 1


@dataclass(frozen=True)
class TrainingRecord:
    """How a checkpoint's weights were trained: the run, its per-epoch history, how long it took,
    the commit and package versions that trained it and the run key it started from."""

    run_key: str = ""
    history: list[dict[str, float]] = field(default_factory=list)
    duration_s: float = 0.0
    commit: str = ""
    versions: str = "{}"
    init_from: str | None = None


def save_checkpoint(path: Path, *, model: torch.nn.Module, method_state: dict[str, Any], config_json: str,
                    training: TrainingRecord) -> Path:
    """Write atomically; only tensors and plain data, so torch.load(weights_only=True) reads it.
    The rows of an evaluation carry `training.commit` as their `train_commit`."""
    payload = {
        "format": FORMAT,
        "kind": "final",
        "run_key": training.run_key,
        "config": config_json,
        "model": _cpu(model.state_dict()),
        "method_state": method_state,
        "history": json.dumps(training.history),
        "train_duration_s": float(training.duration_s),
        "train_commit": training.commit,
        "train_versions": training.versions,
        **({"init_from": training.init_from} if training.init_from else {}),
    }
    return write_atomically(path, lambda fh: torch.save(payload, fh))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint safely; a missing, foreign or corrupt file is a one-line DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {str(path)!r} not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"checkpoint {str(path)!r} is not a readable benchmark checkpoint "
                        f"({type(err).__name__})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "config" not in payload:
        raise DataError(f"checkpoint {str(path)!r} is not a benchmark checkpoint of format {FORMAT}")
    try:
        payload["config"] = json.loads(payload["config"])
        payload["history"] = json.loads(payload.get("history", "[]"))
    except (TypeError, ValueError) as err:
        raise DataError(f"checkpoint {str(path)!r} has a config or history that is not JSON ({type(err).__name__})") \
            from None
    if not isinstance(payload["config"], dict) or not isinstance(payload["history"], list):
        raise DataError(f"checkpoint {str(path)!r} has a config that is not a JSON object")
    return payload


@dataclass
class Position:
    """Where an unfinished training run stands, and the running totals of its current epoch."""

    epoch: int = 0  # the epoch in progress (0-based)
    batch: int = 0  # batches of that epoch already trained
    step: int = 0
    samples_seen: int = 0
    epoch_generator: torch.Tensor | None = None  # generator state that drew this epoch's sample order
    history: list[dict[str, float]] = field(default_factory=list)  # finished epochs
    sums: dict[str, float] = field(default_factory=dict)  # loss sums of the epoch so far
    correct: int = 0
    seen: int = 0
    elapsed_s: float = 0.0


def save_resume(path: Path, *, run_key: str, position: Position, model: torch.nn.Module,
                optimizer: torch.optim.Optimizer, method_state: dict[str, Any], generator: torch.Generator,
                device: torch.device) -> Path:
    """The full training state after `position`, including both random number generators."""
    payload = {
        "format": FORMAT,
        "kind": "resume",
        "run_key": run_key,
        "config": "{}",
        "model": _cpu(model.state_dict()),
        "optimizer": _cpu(optimizer.state_dict()),
        "method_state": _cpu(method_state),
        "generator": generator.get_state(),
        "global_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "position": {**position.__dict__, "history": json.dumps(position.history),
                     "sums": json.dumps(position.sums)},
    }
    return write_atomically(path, lambda fh: torch.save(payload, fh))


def load_resume(path: Path, run_key: str) -> dict[str, Any] | None:
    """The resume payload at `path` for this run, or None when there is none (or it is another run's)."""
    if not Path(path).is_file():
        return None
    payload = load_checkpoint(path)
    if payload.get("kind") != "resume" or payload.get("run_key") != run_key:
        return None
    raw = dict(payload["position"])
    raw["history"], raw["sums"] = json.loads(raw["history"]), json.loads(raw["sums"])
    payload["position"] = Position(**raw)
    return payload


def to_device(obj: Any, device: torch.device) -> Any:
    """Tensors of a nested structure (method or optimizer state) moved to `device`."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def _cpu(obj: Any) -> Any:
    return to_device(obj.detach() if isinstance(obj, torch.Tensor) else obj, torch.device("cpu"))


def finished_checkpoint(path: str | Path, dataset: str) -> dict[str, Any]:
    """The payload of a finished checkpoint trained on `dataset`, named by `train.init_from`;
    anything else is refused in one line."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"train.init_from: no checkpoint file {str(file)!r}; expected run:<method> or the path of a "
                        "finished run's checkpoint (OUT/checkpoints/*.pt)")
    payload = load_checkpoint(file)
    if payload.get("kind") != "final":
        raise DataError(f"train.init_from: {str(file)!r} is a resume checkpoint of an unfinished run; "
                        "name the finished run's checkpoint")
    trained = payload["config"]["run"]["dataset"]
    if trained != dataset:
        raise DataError(f"train.init_from: {str(file)!r} was trained on {trained!r}, not "
                        f"{dataset!r}; a run starts from weights trained on its own dataset")
    return payload
