"""How a number was made: source commit, package versions, device, time."""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

import torch

PACKAGES = ("torch", "torchvision", "numpy", "captum", "torchattacks", "pandas", "pyarrow", "datasets")
DISTRIBUTION = "saliency-robustness-benchmark"


@lru_cache(maxsize=1)
def git_commit() -> str:
    """HEAD of the source checkout (with '+dirty' for uncommitted changes), or the installed version."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"unknown (installed {package_version(DISTRIBUTION)})"


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


@lru_cache(maxsize=1)
def versions_json() -> str:
    data = {"python": platform.python_version(), DISTRIBUTION: package_version(DISTRIBUTION)}
    data.update({name: package_version(name) for name in PACKAGES})
    return json.dumps(data, sort_keys=True)


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device, ranks: int = 1) -> str:
    """What ran a run, e.g. "cuda (NVIDIA H100 80GB HBM3)" or, for a torchrun run, "4 ranks x cuda (...)"."""
    one = (f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda"
           else f"cpu ({cpu_model()}, {torch.get_num_threads()} threads)")
    return f"{ranks} ranks x {one}" if ranks > 1 else one


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present; 'cpu' and 'cuda[:i]' are taken as given."""
    from benchmark.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"unknown device {name!r}; expected auto, cpu or cuda[:index]") from err


def now() -> datetime:
    return datetime.now(timezone.utc)


def run_id(key: str, created: datetime) -> str:
    """One execution of a configuration: its key and the UTC time it started."""
    return f"{key}-{created.strftime('%Y%m%dT%H%M%S%fZ')}"


IDENTITY = ("run_key", "config_key", "method", "dataset", "profile", "seed", "config")  # what names a run's rows


def run_columns(identity: Mapping[str, Any], *, created: datetime, device: str = "", data_source: str = "",
                train_commit: str = "") -> dict[str, object]:
    """The provenance columns every result row of one execution carries (docs/RESULTS.md):
    `identity` gives the IDENTITY columns (the resolved config as JSON in `config`)."""
    missing = [k for k in IDENTITY if k not in identity]
    if missing:
        raise ValueError(f"run_columns needs {', '.join(missing)}")
    return {"run_id": run_id(identity["run_key"], created), **{k: identity[k] for k in IDENTITY},
            "git_commit": git_commit(), "train_commit": train_commit or git_commit(),
            "versions": versions_json(), "device": device, "data_source": data_source, "created": created}
