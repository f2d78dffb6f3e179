"""The prepared cache: decoded, resized images and masks stored as Arrow through Hugging Face datasets.

`benchmark prepare NAME --data-root DIR` decodes a dataset's splits once and saves them under
DIR/.benchmark-cache/<name>-<key>/<split>, where the key hashes the dataset settings that shape
the pixels (image size, split seed, ...). Later runs with the same settings read the arrays back
instead of decoding and resizing every JPEG; other settings get their own cache. Beside the splits,
`source.json` holds the fingerprint of the source files the cache was built from (sizes and
modification times of annotation files and CSVs, file counts of image folders) and the dataset's
own counts; a cache whose sources changed since is never read. Downloads of public archives are
extracted here too, never outside their target folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from benchmark.data.split import TensorSplit
from benchmark.errors import DataError

CACHE = ".benchmark-cache"
SOURCE = "source.json"


def cache_folder(data_root: Path, name: str, params) -> Path:
    """Where the prepared splits of dataset `name` with these settings live."""
    settings = dataclasses.asdict(params) if dataclasses.is_dataclass(params) and not isinstance(params, type) else {}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(data_root) / CACHE / f"{name}-{key}"


def fingerprint(root: Path, sources: Sequence[Path]) -> dict[str, list[int]]:
    """What identifies the source files cheaply: [size, mtime_ns] of each file and [file count,
    mtime_ns] of each folder (a folder's mtime changes when files are added, removed or renamed),
    keyed by the path relative to the data root; [-1, -1] for what is missing."""
    out = {}
    for path in sources:
        name = str(Path(path).relative_to(root)) if Path(path).is_relative_to(root) else str(path)
        try:
            stat = os.stat(path)
        except OSError:
            out[name] = [-1, -1]
            continue
        if Path(path).is_dir():
            with os.scandir(path) as entries:
                out[name] = [sum(1 for _ in entries), stat.st_mtime_ns]
        else:
            out[name] = [stat.st_size, stat.st_mtime_ns]
    return out


def changed_sources(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Source paths whose fingerprint differs between the cache and the files now."""
    return sorted(k for k in {*stored, *current} if stored.get(k) != current.get(k))


def save_splits(splits: dict[str, TensorSplit], folder: Path, source: Mapping[str, Any] | None = None) -> Path:
    """Write every split as an Arrow dataset and `source` (fingerprint and counts) as source.json;
    the folder appears whole or not at all."""
    from datasets.utils.logging import disable_progress_bar

    from datasets import Array3D, Dataset, Features, Value  # type: ignore[attr-defined]  # Hugging Face

    disable_progress_bar()  # our own lines say what was written
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (staging / SOURCE).write_text(json.dumps(dict(source or {}), sort_keys=True))
        for name, split in splits.items():
            c, h, w = split.images.shape[1:]
            features = Features({"image": Array3D((c, h, w), "uint8"), "mask": Array3D((1, h, w), "uint8"),
                                 "label": Value("int64")})
            table = Dataset.from_dict({"image": split.images.numpy(), "mask": split.masks.numpy(),
                                       "label": split.labels.numpy()}, features=features)
            table.save_to_disk(str(staging / name))
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def read_source(folder: Path) -> dict[str, Any]:
    """The fingerprint and counts a cache was built with ({} for a cache without them)."""
    try:
        return json.loads((folder / SOURCE).read_text())
    except (OSError, ValueError):
        return {}


def load_splits(folder: Path, names: tuple[str, ...]) -> dict[str, TensorSplit] | None:
    """The prepared splits, or None when this cache does not exist (or lacks a split)."""
    if not all((folder / name).is_dir() for name in names):
        return None
    from datasets import load_from_disk  # type: ignore[attr-defined]  # Hugging Face

    out = {}
    for name in names:
        try:
            table = load_from_disk(str(folder / name)).data  # the Arrow table, read without conversion
            images, masks = (stored_array(table.column(c)) for c in ("image", "mask"))
            labels = np.require(table.column("label").to_numpy(), requirements="W")
        except Exception as err:
            raise DataError(f"prepared cache {str(folder / name)!r} is unreadable ({type(err).__name__}); "
                            "rebuild it with `benchmark prepare --force`") from None
        out[name] = TensorSplit(torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(masks))
    return out


def stored_array(column) -> np.ndarray:
    """An Array3D column as one (N, C, H, W) array of its stored dtype (datasets' numpy formatter
    would widen uint8 to int64)."""
    shape = column.type.shape
    values = column.combine_chunks().storage
    for _ in shape:
        values = values.flatten()
    array = values.to_numpy(zero_copy_only=False).reshape(len(column), *shape)
    return np.require(array, requirements="W")  # a copy only where Arrow's buffer is read-only


# -- downloads ----------------------------------------------------------------------------------
def check_tar_entry(entry: tarfile.TarInfo, archive: Path, inside: Callable[..., None]) -> None:
    """Refuse a tar member whose path or link lands outside the target, or a special file."""
    inside(entry.name)
    if entry.issym():  # relative to the link's own folder
        inside(str(Path(entry.name).parent / entry.linkname), "symbolic link target")
    elif entry.islnk():  # relative to the archive root
        inside(entry.linkname, "hard link target")
    elif not (entry.isfile() or entry.isdir()):
        raise DataError(f"archive {str(archive)!r} has a special file {entry.name!r}; refused, nothing extracted")


def safe_extract(archive: Path, target: Path) -> None:
    """Unpack a .zip or .tar(.gz) into target. Every member is checked before any is extracted: a
    path, symbolic link or hard link that would land outside target is refused, and so is a
    device or other special file. Members are unpacked into a staging folder inside target and
    moved into place only when all of them succeeded, so a refused or broken archive leaves
    target as it was."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()

    def inside(name: str, what: str = "member") -> None:
        path = (root / name).resolve()
        if path != root and root not in path.parents:
            raise DataError(f"archive {str(archive)!r} has a {what} {name!r} outside the target folder; refused, "
                            "nothing extracted")

    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.infolist():
                    inside(member.filename)
                zf.extractall(staging)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for entry in tf.getmembers():
                    check_tar_entry(entry, archive, inside)
                tf.extractall(staging, filter="data")
        else:
            raise DataError(f"{str(archive)!r} is neither a zip nor a tar archive")
        merge_into(staging, target)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"archive {str(archive)!r} is damaged ({type(err).__name__}: {err}); nothing extracted") \
            from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def merge_into(source: Path, target: Path) -> None:
    """Move everything under `source` into `target`, descending into folders both have."""
    for entry in source.iterdir():
        destination = target / entry.name
        if entry.is_dir() and not entry.is_symlink() and destination.is_dir():
            merge_into(entry, destination)
        else:
            os.replace(entry, destination)


def download(url: str, target: Path, timeout: float = 30.0) -> None:
    """Fetch a file into target, extracting it there when it is an archive; a network failure is
    one DataError that names the URL."""
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        archive = Path(tmp) / url.rsplit("/", 1)[-1]
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as fh:
                shutil.copyfileobj(response, fh, length=1 << 20)
        except OSError as err:
            raise DataError(f"could not download {url} ({type(err).__name__}: {err}); fetch it by hand and "
                            f"unpack it into {str(target)!r}") from None
        if zipfile.is_zipfile(archive) or tarfile.is_tarfile(archive):
            safe_extract(archive, target)
        else:  # a plain file, such as a CSV of labels
            shutil.move(str(archive), str(target / archive.name))
