"""The dataset contract: a plugin serves splits of (image in [0,1], label, object mask), declares
its classes, shape and normalisation (DataInfo), the model it proposes, its eval sets, attack
regions and derived metrics. `InMemoryDataset` adds the prepared cache of `benchmark prepare`.

Mask convention everywhere: 1 = salient object (protected), 0 = background (attackable).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor

from benchmark.data.loader import iterate
from benchmark.data.split import Batch, DataInfo, EvalSet, Groups, Split, TensorSplit
from benchmark.errors import DataError

RegionFn = Callable[[Batch], Tensor]


@dataclass(frozen=True)
class Ranking:
    """The number a dataset's leaderboard ranks by: per run, the mean of its rows of `metric` that
    match the given attack, region and eps (None matches any); the direction is the metric's."""

    metric: str
    attack: str | None = None
    region: str | None = None
    eps: float | None = None
    label: str = ""

    def matches(self, row: Any) -> bool:
        def same(key: str, want: Any) -> bool:
            if want is None:
                return True
            have = row[key]
            return have is not None and (abs(have - want) < 1e-9 if key == "eps" else have == want)

        return row["metric"] == self.metric and all(
            same(key, want) for key, want in (("attack", self.attack), ("region", self.region), ("eps", self.eps)))


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
    Params: ClassVar[type | None] = None
    version: ClassVar[int] = 1  # bump when a change alters the pixels, labels or splits: old checkpoints go stale
    default_model: ClassVar[dict[str, Any]] = {"encoder": "lenet3"}  # the `model` section a run starts from
    ranking: ClassVar[Ranking | None] = None  # what its leaderboard ranks by (None: the first robust column)
    split_names: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    downloads: ClassVar[tuple[str | Download, ...]] = ()  # public files `benchmark prepare --download` may fetch
    # L-inf eps of the full-image PGD that `benchmark sweep` selects configurations by (paper: 2/255
    # on COCO, 1/255 on ImageNet; this project's choice elsewhere).
    selection_eps: ClassVar[float] = 2 / 255
    # Focus (Arias-Duart et al. 2022) needs a mosaic of classes: "halves" when every image already
    # is one (C-MNIST: the label's digit on the left half, another digit on the right, the object
    # mask marks the label's half); "mosaic" builds 2x2 mosaics of evaluation images.
    focus: ClassVar[str] = "mosaic"

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

    @classmethod
    def start(cls, profile: str) -> dict[str, dict[str, Any]]:
        """Config overrides of the run that `train.init_from=run:<method>` starts from under a
        profile (e.g. a longer vanilla pre-training), on top of the starting method's defaults."""
        return {}

    def split(self, name: str) -> Split:
        raise DataError(f"dataset {self.name!r} has no split {name!r}; expected one of {', '.join(self.split_names)}")

    def check(self, training: bool = True) -> None:
        """Fail early, with a one-line DataError, if the data a run reads cannot be loaded: the
        train split when it trains, else the test split."""
        self.split("train" if training else "test")

    def prepare(self, *, download: bool = False, force: bool = False) -> list[str]:
        """`benchmark prepare`: check the files, fetching the public `downloads` first when allowed
        and the check fails; returns lines that describe what is there."""
        from benchmark.data.prepared import download as fetch

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

    def groups(self, split: str) -> Groups | None:
        """The groups of a split's samples (the `group_accuracy` suite: per-group and worst-group
        accuracy), or None when the dataset defines none."""
        return None

    def augment(self, batch: Batch, generator: torch.Generator) -> Batch:
        """Training augmentation, applied to image and mask alike (identity by default)."""
        return batch

    def root(self) -> Path:
        """The data root (the caller knows there is one)."""
        if self.data_root is None:
            raise DataError(f"dataset {self.name!r} needs --data-root DIR")
        return Path(self.data_root)

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
        from benchmark.data.prepared import cache_folder

        return cache_folder(self.data_root, self.name, self.params) if self.data_root is not None else None

    def stale_sources(self, folder: Path) -> list[str]:
        """Source files that changed since the cache in `folder` was built ([] when it matches)."""
        from benchmark.data.prepared import changed_sources, fingerprint, read_source

        now = fingerprint(self.root(), self.source_files())
        return changed_sources(read_source(folder).get("fingerprint", {}), now)

    def _cached(self) -> dict[str, TensorSplit] | None:
        from benchmark.data.prepared import load_splits, read_source

        folder = self.cache_folder()
        if folder is None or self._skip_cache or not folder.is_dir():
            return None
        changed = self.stale_sources(folder)
        if changed:
            self.notes.append(f"the prepared cache {folder} no longer matches its source files "
                              f"({', '.join(changed[:3])} changed); reading the raw files "
                              f"(`benchmark prepare {self.name} --force` rebuilds it)")
            return None
        splits = load_splits(folder, self.split_names)
        if splits is not None:
            self.counts = dict(read_source(folder).get("counts", {}))
        return splits

    def prepare(self, *, download: bool = False, force: bool = False) -> list[str]:
        """Check (and fetch) the raw files, decode them and write the prepared cache with the
        fingerprint of its sources; a cache of the same settings and sources is kept unless `force`."""
        from benchmark.data.prepared import fingerprint, save_splits

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
            sources = fingerprint(self.root(), self.source_files())  # before decoding: a later change shows
            lines += super().prepare(download=download)
            if download:  # fetched files are sources too
                sources = fingerprint(self.root(), self.source_files())
        finally:
            self._skip_cache = False
        save_splits(self._loaded or {}, folder, {"fingerprint": sources, "counts": self.counts})
        return [*lines, *self.count_lines(), f"wrote the prepared cache {folder}"]

    def count_lines(self) -> list[str]:
        """The loader's own counts as lines for `benchmark prepare` (override to word them)."""
        return [f"{name.replace('_', ' ')}: {value}" for name, value in self.counts.items()]


def _labels_of(split: Split) -> Tensor:
    labels = getattr(split, "labels", None)
    if labels is not None:
        return labels.long()
    return torch.cat([b.y for b in iterate(split, 1024)])


class EvalSource(ABC):
    """A registered family of evaluation sets (EVAL_SETS) that a model with ImageNet-synset classes
    can be scored on, whoever trained it: IN-9 variants, CounterAnimal. Built with the data root,
    the model's label space (synset ids, in class order), the image size and its own `Params`
    (filled from the same-named settings of the dataset that uses it)."""

    name: ClassVar[str] = ""
    Params: ClassVar[type]
    version: ClassVar[int] = 1

    def __init__(self, root: Path, wnids: list[str], image_size: int, params: Any):
        self.root, self.wnids, self.image_size, self.params = root, wnids, image_size, params

    def present(self) -> bool:
        """Whether its files are under the data root (optional sources are skipped when absent)."""
        return True

    @abstractmethod
    def eval_sets(self) -> list[EvalSet]:
        """The sets scored for clean accuracy; a file that cannot be read or mapped is a DataError."""

    def masked_split(self) -> Split | None:
        """A split with object masks, for attacks and attributions (None when there is none)."""
        return None

    def check(self) -> None:
        """What the evaluation will read, checked cheaply before any training (headers, names)."""
        self.eval_sets()

    def derived(self, accuracy: dict[str, float]) -> dict[str, float]:
        """Metrics derived from the clean accuracies of its sets (e.g. a background gap)."""
        return {}
