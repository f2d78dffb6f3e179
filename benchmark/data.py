"""The dataset contract: splits of (image in [0,1], label, salient mask), plus what models need.

Mask convention everywhere: 1 = salient object (protected), 0 = background (attackable).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Protocol

import torch
from torch import Tensor

from .errors import DataError


@dataclass
class Batch:
    """A batch of images in [0,1] (B,C,H,W), labels (B,), object masks (B,1,H,W) and indices."""

    x: Tensor
    y: Tensor
    mask: Tensor
    index: Tensor

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in (self.x, self.y, self.mask, self.index)))

    def __len__(self) -> int:
        return len(self.y)


class Split(Protocol):
    """What the engine needs of a split: its length and batches by index."""

    def __len__(self) -> int: ...

    def batch(self, index: Tensor) -> Batch: ...


class TensorSplit:
    """A split held in memory: uint8 images (N,C,H,W), int64 labels, uint8 masks (N,1,H,W)."""

    def __init__(self, images: Tensor, labels: Tensor, masks: Tensor):
        if images.dtype != torch.uint8 or masks.dtype not in (torch.uint8, torch.bool):
            raise DataError("a TensorSplit holds uint8 images and uint8 or bool masks")
        if images.ndim != 4 or masks.ndim != 4 or masks.shape[1] != 1:
            raise DataError(f"expected images (N,C,H,W) and masks (N,1,H,W), got {tuple(images.shape)} and {tuple(masks.shape)}")
        if not (len(images) == len(labels) == len(masks)) or images.shape[-2:] != masks.shape[-2:]:
            raise DataError("images, labels and masks of a split must have matching lengths and sizes")
        self.images, self.labels, self.masks = images, labels.long(), masks.to(torch.uint8)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int, Tensor]:
        return self.images[i].float() / 255.0, int(self.labels[i]), self.masks[i].float()

    def batch(self, index: Tensor) -> Batch:
        return Batch(
            x=self.images[index].float().div_(255.0),
            y=self.labels[index],
            mask=self.masks[index].float(),
            index=index,
        )


class MapSplit:
    """Adapts any map-style dataset yielding (image, label, mask) to the Split protocol."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def batch(self, index: Tensor) -> Batch:
        items = [self.dataset[int(i)] for i in index]
        return Batch(
            x=torch.stack([item[0] for item in items]),
            y=torch.tensor([int(item[1]) for item in items]),
            mask=torch.stack([item[2] for item in items]).float(),
            index=index,
        )


def iterate(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    indices: Tensor | None = None,
) -> Iterator[Batch]:
    """Batches of a split, in order or shuffled by `generator`, optionally over a subset."""
    order = torch.arange(len(split)) if indices is None else indices
    if shuffle:
        order = shuffled(order, generator)
    yield from batches_in_order(split, order, batch_size)


def shuffled(order: Tensor, generator: torch.Generator | None) -> Tensor:
    """`order` permuted by one draw from `generator` (an epoch's sample order)."""
    return order[torch.randperm(len(order), generator=generator)]


def batches_in_order(split: Split, order: Tensor, batch_size: int, first_batch: int = 0) -> Iterator[Batch]:
    """The batches of `order`, from batch number `first_batch` on (earlier ones are never loaded)."""
    for start in range(first_batch * batch_size, len(order), batch_size):
        yield split.batch(order[start : start + batch_size])


def first_of_shuffle(n_total: int, n: int | None, seed: int = 0) -> Tensor | None:
    """The first `n` indices of a seeded permutation (None when n covers everything)."""
    if n is None or n >= n_total:
        return None
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


@dataclass(frozen=True)
class DataInfo:
    """What a model and a method need to know about a dataset, without its data."""

    num_classes: int
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    encoder: str
    encoder_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalSet:
    """A named set scored for clean accuracy: a split and its label protocol."""

    name: str
    split: Split
    predict: Callable[[Tensor], Tensor] = field(default=lambda logits: logits.argmax(dim=1))


RegionFn = Callable[[Batch], Tensor]


@dataclass(frozen=True)
class Download:
    """A public file that `benchmark prepare --download` may fetch: unpacked (or, for a plain
    file, placed) into `into`, relative to the data root, unless `present` already exists there."""

    url: str
    into: str = ""
    present: str = ""

    @classmethod
    def of(cls, item: "str | Download") -> "Download":
        return item if isinstance(item, Download) else cls(item)


class BenchmarkDataset:
    """Base class of a dataset plugin. Subclasses set `name`, `info`, `Params`, and the splits."""

    name: ClassVar[str] = ""
    preset: ClassVar[str] = ""  # the paper setting whose method presets apply (coco, isic, imagenet...)
    Params: ClassVar[type | None] = None
    split_names: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    downloads: ClassVar[tuple[str | Download, ...]] = ()  # public files `benchmark prepare --download` may fetch
    # L-inf eps of the full-image PGD that `benchmark sweep` selects configurations by (paper: 2/255
    # on COCO, 1/255 on ImageNet; this project's choice elsewhere).
    selection_eps: ClassVar[float] = 2 / 255

    def __init__(self, params: Any = None, data_root: Path | None = None):
        self.params = params if params is not None or self.Params is None else self.Params()
        self.data_root = data_root
        self.notes: list[str] = []  # one-line remarks for the user (e.g. a stale prepared cache)

    @property
    def info(self) -> DataInfo:
        raise DataError(f"dataset {self.name!r} does not declare its DataInfo")

    @classmethod
    def defaults(cls, profile: str) -> dict[str, dict[str, Any]]:
        """Config overrides for this dataset under a profile ({section: {key: value}})."""
        return {}

    def split(self, name: str) -> Split:
        raise DataError(f"dataset {self.name!r} has no split {name!r}; expected one of {', '.join(self.split_names)}")

    def check(self) -> None:
        """Fail early, with a one-line DataError, if the data cannot be loaded (loads the train split)."""
        self.split("train")

    def prepare(self, *, download: bool = False, force: bool = False) -> list[str]:
        """`benchmark prepare`: check the files, fetching the public `downloads` first when allowed
        and the check fails; returns lines that describe what is there."""
        from .prepared import download as fetch

        try:
            self.check()
        except DataError:
            if not (download and self.downloads and self.data_root is not None):
                raise
            root = Path(self.data_root)
            for item in map(Download.of, self.downloads):
                if not (item.present and (root / item.present).exists()):
                    fetch(item.url, root / item.into)
            self.check()
        return [f"{name}: {len(self.split(name))} samples" for name in self.split_names]

    def eval_sets(self) -> list[EvalSet]:
        """Sets scored for clean accuracy besides the configured splits (e.g. IN-9 variants)."""
        return []

    def regions(self) -> dict[str, RegionFn]:
        """Attack regions this dataset defines beyond the generic ones (1 = attackable)."""
        return {}

    def derived(self, accuracy: dict[str, float]) -> dict[str, float]:
        """Metrics derived from clean accuracy per eval set (e.g. a background gap)."""
        return {}

    def augment(self, batch: Batch, generator: torch.Generator) -> Batch:
        """Training augmentation, applied to image and mask alike (identity by default)."""
        return batch

    def require_root(self, layout: str) -> Path:
        """The data root, or a one-line DataError saying that this dataset needs one holding `layout`."""
        if self.data_root is None:
            raise DataError(f"{self.name} needs --data-root DIR (or BENCHMARK_DATA_ROOT) holding {layout}")
        return Path(self.data_root)

    def source(self) -> str:
        """Where the data came from, for provenance."""
        return str(self.data_root) if self.data_root else "unknown"

    def class_weights(self) -> Tensor:
        """Class-balanced loss weights w_k = N / (K * N_k) from the training labels."""
        labels = _labels_of(self.split("train"))
        counts = torch.bincount(labels, minlength=self.info.num_classes).float()
        if (counts == 0).any():
            missing = [self.info.class_names[k] for k in torch.nonzero(counts == 0).flatten().tolist()]
            raise DataError(f"dataset {self.name!r}: no training samples of class {', '.join(missing)}")
        return counts.sum() / (len(counts) * counts)


class InMemoryDataset(BenchmarkDataset, ABC):
    """A dataset whose splits are decoded together on first use and then kept in memory; a
    prepared cache (`benchmark prepare`) of the same settings, built from the same source files,
    is read instead of the raw files."""

    _loaded: dict[str, TensorSplit] | None = None
    _skip_cache = False

    def __init__(self, params: Any = None, data_root: Path | None = None):
        super().__init__(params, data_root)
        self.counts: dict[str, int] = {}  # the loader's own counts (e.g. images dropped), kept in the cache

    @abstractmethod
    def load_splits(self) -> dict[str, TensorSplit]:
        """Every split of `split_names`, decoded from the raw files."""

    def source_files(self) -> list[Path]:
        """The files and folders the splits are decoded from; their fingerprint keys the cache."""
        return []

    def split(self, name: str) -> Split:
        if name not in self.split_names:
            return super().split(name)
        if self._loaded is None:
            self._loaded = self._cached() or self.load_splits()
        return self._loaded[name]

    def cache_folder(self) -> Path | None:
        from .prepared import cache_folder

        return cache_folder(self.data_root, self.name, self.params) if self.data_root is not None else None

    def stale_sources(self, folder: Path) -> list[str]:
        """Source files that changed since the cache in `folder` was built ([] when it matches)."""
        from .prepared import changed_sources, fingerprint, read_source

        now = fingerprint(Path(self.data_root), self.source_files())
        return changed_sources(read_source(folder).get("fingerprint", {}), now)

    def _cached(self) -> dict[str, TensorSplit] | None:
        from .prepared import load_splits, read_source

        folder = self.cache_folder()
        if folder is None or self._skip_cache or not folder.is_dir():
            return None
        changed = self.stale_sources(folder)
        if changed:
            self.notes.append(f"the prepared cache {folder} no longer matches its source files ({', '.join(changed[:3])} "
                              f"changed); reading the raw files (`benchmark prepare {self.name} --force` rebuilds it)")
            return None
        splits = load_splits(folder, self.split_names)
        if splits is not None:
            self.counts = dict(read_source(folder).get("counts", {}))
        return splits

    def prepare(self, *, download: bool = False, force: bool = False) -> list[str]:
        """Check (and fetch) the raw files, decode them and write the prepared cache with the
        fingerprint of its sources; a cache of the same settings and sources is kept unless `force`."""
        from .prepared import fingerprint, save_splits

        folder = self.cache_folder()
        if folder is None:
            raise DataError(f"dataset {self.name!r} needs --data-root DIR to prepare")
        self._loaded = None
        lines = []
        if not force and folder.is_dir():
            changed = self.stale_sources(folder)
            if not changed and (cached := self._cached()) is not None:
                self._loaded = cached
                return [f"prepared cache {folder} is up to date (--force rebuilds it)",
                        *(f"{name}: {len(split)} samples" for name, split in cached.items()), *self.count_lines()]
            if changed:
                lines.append(f"the prepared cache {folder} no longer matches its source files "
                             f"({', '.join(changed[:3])} changed); rebuilding it")
        self._skip_cache = True
        try:
            sources = fingerprint(Path(self.data_root), self.source_files())  # before decoding: a later change shows
            lines += super().prepare(download=download)
            if download:  # fetched files are sources too
                sources = fingerprint(Path(self.data_root), self.source_files())
        finally:
            self._skip_cache = False
        save_splits(self._loaded, folder, {"fingerprint": sources, "counts": self.counts})
        return [*lines, *self.count_lines(), f"wrote the prepared cache {folder}"]

    def count_lines(self) -> list[str]:
        """The loader's own counts as lines for `benchmark prepare` (override to word them)."""
        return [f"{name.replace('_', ' ')}: {value}" for name, value in self.counts.items()]


def _labels_of(split: Split) -> Tensor:
    labels = getattr(split, "labels", None)
    if labels is not None:
        return labels.long()
    return torch.cat([b.y for b in iterate(split, 1024)])
