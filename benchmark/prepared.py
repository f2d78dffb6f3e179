"""The prepared cache: decoded, resized images and masks stored as Arrow through Hugging Face datasets.

`benchmark prepare NAME --data-root DIR` decodes a dataset's splits once and saves them under
DIR/.benchmark-cache/<name>-<key>/<split>, where the key hashes the dataset settings that shape
the pixels (image size, split seed, ...). Later runs with the same settings read the arrays back
instead of decoding and resizing every JPEG; other settings get their own cache. Downloads of
public archives are extracted here too, never outside their target folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import torch

from .data import TensorSplit
from .errors import DataError

CACHE = ".benchmark-cache"


def cache_folder(data_root: Path, name: str, params) -> Path:
    """Where the prepared splits of dataset `name` with these settings live."""
    settings = dataclasses.asdict(params) if dataclasses.is_dataclass(params) else {}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(data_root) / CACHE / f"{name}-{key}"


def save_splits(splits: dict[str, TensorSplit], folder: Path) -> Path:
    """Write every split as an Arrow dataset; the folder appears whole or not at all."""
    from datasets import Array3D, Dataset, Features, Value

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
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


def load_splits(folder: Path, names: tuple[str, ...]) -> dict[str, TensorSplit] | None:
    """The prepared splits, or None when this cache does not exist (or lacks a split)."""
    if not all((folder / name).is_dir() for name in names):
        return None
    from datasets import load_from_disk

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
def safe_extract(archive: Path, target: Path) -> None:
    """Unpack a .zip or .tar(.gz) into target; a member that would land outside it is refused."""
    target = target.resolve()

    def inside(name: str) -> Path:
        path = (target / name).resolve()
        if path != target and target not in path.parents:
            raise DataError(f"archive {str(archive)!r} has a member {name!r} outside the target folder; refused")
        return path

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                inside(member.filename)
            zf.extractall(target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                inside(member.name)
                if member.issym() or member.islnk():
                    inside(str(Path(member.name).parent / member.linkname))
            tf.extractall(target, filter="data")
    else:
        raise DataError(f"{str(archive)!r} is neither a zip nor a tar archive")


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
