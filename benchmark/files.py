"""Writing output files so that a reader never sees half of one and nothing older is lost."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator


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
    except BaseException as err:
        full = not isinstance(err, OSError) and disk_full(path.parent)  # writers such as torch.save hide ENOSPC
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from err
        raise
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    """`data` as the whole of `path`, written atomically."""
    def write(fh: BinaryIO) -> None:
        fh.write(data)

    return write_atomically(path, write)


def disk_full(folder: Path, slack: int = 1 << 20) -> bool:
    """Whether the file system of `folder` has less than `slack` bytes left for this user."""
    try:
        stat = os.statvfs(folder)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < slack


def remove_temporaries(path: Path) -> list[Path]:
    """Delete the temporary files that a killed `write_atomically` left beside `path`.

    Only safe while no other process may be writing `path` (hold its `exclusive` lock)."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def exclusive(lock_path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an advisory lock on `lock_path` (created if missing) for the block.

    The lock is `flock`: the kernel releases it when its holder exits, even by kill -9, so a
    crashed run never leaves a stale lock. Another holder makes this call wait (after calling
    `on_wait` once). Works across processes on one machine and on NFSv4 shares."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def data_root_from(path: str | Path | None, env: str = "BENCHMARK_DATA_ROOT") -> Path | None:
    """The data root given on the command line, else from the environment, else None."""
    value = path if path is not None else os.environ.get(env)
    return Path(value).expanduser() if value else None
