"""Writing output files so that a reader never sees half of one and nothing older is lost."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write` on a temporary file beside `path`, fsync it, then rename it over `path`.

    An interrupted or failing write leaves `path` as it was (absent or the previous version). The
    file gets the permissions an ordinary `open` would give it (mkstemp alone makes it private)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def data_root_from(path: str | Path | None, env: str = "BENCHMARK_DATA_ROOT") -> Path | None:
    """The data root given on the command line, else from the environment, else None."""
    value = path if path is not None else os.environ.get(env)
    return Path(value).expanduser() if value else None
