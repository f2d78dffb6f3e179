"""Checkpoints: weights, method state and the resolved config, loadable with weights_only=True."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .errors import DataError
from .files import write_atomically

FORMAT = 1


def save_checkpoint(path: Path, *, model: torch.nn.Module, method_state: dict[str, Any], config_json: str,
                    history: list[dict[str, float]]) -> Path:
    """Write atomically; only tensors and plain data, so torch.load(weights_only=True) reads it."""
    payload = {
        "format": FORMAT,
        "config": config_json,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "method_state": method_state,
        "history": json.dumps(history),
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
        raise DataError(f"checkpoint {str(path)!r} is not a readable benchmark checkpoint ({type(err).__name__})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "config" not in payload:
        raise DataError(f"checkpoint {str(path)!r} is not a benchmark checkpoint of format {FORMAT}")
    payload["config"] = json.loads(payload["config"])
    payload["history"] = json.loads(payload.get("history", "[]"))
    return payload
