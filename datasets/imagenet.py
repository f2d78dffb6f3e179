"""ImageNet training scored on ImageNet-9 and CounterAnimal: the H-SPLID paper's transfer protocol.

The model is an ImageNet classifier trained (or fine-tuned) on an ImageNet folder, then scored by
the registered evaluation sets of `dataset.eval_sources` (EVAL_SETS: `in9`, `counteranimal`), which
any model with ImageNet-synset classes can be scored on. Layout under the data root:
    imagenet/train/<wnid>/*.JPEG, imagenet/val/<wnid>/*.JPEG   class index = sorted wnids
    bg_challenge/...                                          IN-9 (datasets/in9.py)
    counteranimal/LAION-final/...                             CounterAnimal (datasets/counteranimal.py)
The `test` split is the first source's masked split (IN-9's original variant with its foreground
masks), so attacks and attributions have an object. ImageNet itself has no object masks: its
splits carry empty masks (no pixel known as object).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from benchmark.data.augment import flipped
from benchmark.data.images import FileSplit
from benchmark.data.split import Batch, DataInfo, EvalSet, Groups, Split
from benchmark.dataset import BenchmarkDataset, Download, EvalSource, Ranking
from benchmark.errors import ConfigError, DataError
from benchmark.registry import DATASETS, EVAL_SETS
from benchmark.suites.attribution import quick_explainer_options

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
IMAGENET_WNIDS = tuple((Path(__file__).with_name("data") / "imagenet_wnids.txt").read_text().split())
BG_REPOSITORY = "https://github.com/MadryLab/backgrounds_challenge"
WHERE = ("imagenet/train/<wnid>/*.JPEG (ImageNet-1k, by hand from image-net.org after registering), "
         "bg_challenge/ (`benchmark prepare in9 --download` fetches the Backgrounds Challenge data and "
         "in_to_in9.json from MadryLab/backgrounds_challenge) and, optionally, counteranimal/LAION-final/ "
         "(by hand from the CounterAnimal project); see docs/DATASETS.md")
VARIANTS = ("original", "only_bg_b", "only_bg_t", "no_fg", "only_fg", "mixed_same", "mixed_rand", "mixed_next")


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def imagenet_wnids(root: Path) -> list[str]:
    """The 1000 (or, in a subset, fewer) class folders of an ImageNet train folder, sorted: the
    class order torchvision's weights use."""
    train = root / "train"
    if not train.is_dir():
        raise DataError(f"ImageNet folder {str(train)!r} not found: expected train/<wnid>/*.JPEG (and val/<wnid>/)")
    wnids = sorted(p.name for p in train.iterdir() if p.is_dir())
    if not wnids or not all(re.fullmatch(r"n\d{8}", w) for w in wnids):
        raise DataError(f"{str(train)!r}: expected one folder per ImageNet synset (n########)")
    return wnids


def imagenet_index(wnid: str, where: str) -> int:
    """The ImageNet-1k class index of a synset (its position among the 1,000 sorted wnids)."""
    try:
        return IMAGENET_WNIDS.index(wnid)
    except ValueError:
        raise DataError(f"{where}: synset {wnid} is not one of the 1,000 ImageNet-1k classes") from None


def class_folder(root: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    """Images and class indices of an ImageNet-layout folder root/<wnid>/*."""
    if any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir()) and \
            not any((root / w).is_dir() for w in wnids):
        raise DataError(f"ImageNet folder {str(root)!r} holds its images directly; sort them into one folder per "
                        "synset, <wnid>/*.JPEG, as in the train folder (the official val labels say which is which)")
    paths, labels = [], []
    for index, wnid in enumerate(wnids):
        folder = root / wnid
        if folder.is_dir():
            for path in images_in(folder):
                paths.append(path)
                labels.append(index)
    if not paths:
        raise DataError(f"no images in {str(root)!r}: expected <wnid>/*.JPEG folders")
    return paths, labels


def decode_all(split: FileSplit, chunk: int = 64) -> None:
    """Decode every image (and mask) of a file-backed split once: a bad file is a one-line DataError."""
    for start in range(0, len(split), chunk):
        split.batch(torch.arange(start, min(start + chunk, len(split))))


@dataclass
class ImageNetParams:
    """The dataset's settings; each evaluation source reads the ones its own Params name."""

    image_size: int = 224
    imagenet: str = "imagenet"
    eval_sources: tuple[str, ...] = ("in9", "counteranimal")
    labels: Literal["synset", "in9", "both"] = "synset"  # in9: IN-9 sets scored 9-way; both: each set both ways
    backgrounds: str = "bg_challenge"
    variants: tuple[str, ...] = VARIANTS
    counteranimal: str = "counteranimal"

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise ConfigError(f"dataset.image_size must be >= 32, got {self.image_size}")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"dataset.variants: unknown IN-9 variant {unknown[0]!r}; expected some of "
                              f"{', '.join(VARIANTS)}")
        for name in self.eval_sources:
            EVAL_SETS.get(name)


@DATASETS.register("in9")
class ImageNetTransfer(BenchmarkDataset):
    """ImageNet training, scored on every ImageNet-9 variant (BG-gap) and CounterAnimal (counter drop)."""

    Params = ImageNetParams
    default_model = {"encoder": "resnet50"}
    ranking = Ranking("bg_gap", label="BG-gap (mixed_same - mixed_rand), lower is better")
    selection_eps = 1 / 255  # the paper's ImageNet selection eps
    # The Backgrounds Challenge test data (a release asset) and its ImageNet -> IN-9 table.
    downloads = (Download(f"{BG_REPOSITORY}/releases/download/data/backgrounds_challenge_data.tar.gz",
                          present="bg_challenge/original"),
                 Download("https://raw.githubusercontent.com/MadryLab/backgrounds_challenge/master/in_to_in9.json",
                          into="bg_challenge", present="bg_challenge/in_to_in9.json"))

    def __init__(self, params: ImageNetParams | None = None, data_root: Path | None = None):
        super().__init__(params, data_root)
        self._wnids: list[str] | None = None
        self._splits: dict[str, Split] = {}
        self._sources: list[EvalSource] | None = None
        self._sets: list[EvalSet] | None = None

    def _root(self) -> Path:
        if self.data_root is None:
            raise DataError(f"{self.name} needs --data-root DIR (or BENCHMARK_DATA_ROOT) holding {WHERE}")
        return Path(self.data_root)

    def wnids(self) -> list[str]:
        """The model's classes: the synset folders of the ImageNet train folder, sorted; without
        that folder (a model trained elsewhere, only evaluated), the 1,000 ImageNet-1k synsets."""
        if self._wnids is None:
            folder = self._root() / self.params.imagenet
            self._wnids = imagenet_wnids(folder) if (folder / "train").is_dir() else list(IMAGENET_WNIDS)
        return self._wnids

    @property
    def info(self) -> DataInfo:
        size, wnids = self.params.image_size, self.wnids()
        return DataInfo(num_classes=len(wnids), class_names=tuple(wnids), input_shape=(3, size, size),
                        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

    @classmethod
    def defaults(cls, profile: str) -> dict:
        """Quick: a smoke run (1,024 training images at 112 px, one epoch, 256 images per eval
        set, every explainer on 16 images with lighter settings). Paper: 20 epochs from
        torchvision's ResNet-50 IMAGENET1K_V2 at LR 5e-4, batch 256."""
        if profile == "paper":
            return {"model": {"weights": "IMAGENET1K_V2"},
                    "train": {"epochs": 20, "batch_size": 256, "lr": 5e-4, "augment": True},
                    "eval": {"suites": ("accuracy", "challenge", "robustness", "attribution")},
                    "robustness": {"grid": {"pgd": {"background": [1 / 255, 2 / 255], "full": [1 / 255]}},
                                   "samples": 1000},
                    "attribution": {"samples": 256}}
        return {"dataset": {"image_size": 112},
                "train": {"epochs": 1, "batch_size": 32, "lr": 5e-4, "samples": 1024},
                "eval": {"suites": ("accuracy", "challenge", "robustness", "attribution"), "samples": 256,
                         "batch_size": 64},
                "challenge": {"foregrounds": 16, "pool": 32},
                "robustness": {"grid": {"pgd": {"background": [1 / 255], "full": [1 / 255]}}, "samples": 64},
                "attribution": {"samples": 16, "faithfulness_samples": 8, "options": quick_explainer_options(112)}}

    def source(self) -> str:
        return f"ImageNet and {', '.join(self.params.eval_sources)} in {self.data_root}"

    def augment(self, batch: Batch, generator: torch.Generator) -> Batch:
        return flipped(batch, generator)

    # -- splits and eval sets ---------------------------------------------------------------
    def sources(self) -> list[EvalSource]:
        """The evaluation sources whose files are present, built for this model's classes."""
        if self._sources is None:
            self._sources = [s for s in (eval_source(name, self._root(), self.wnids(), self.params)
                                         for name in self.params.eval_sources) if s.present()]
        return self._sources

    def split(self, name: str) -> Split:
        if name not in self.split_names:
            return super().split(name)
        if name not in self._splits:
            self._splits[name] = self._masked_split() if name == "test" else self._imagenet(name)
        return self._splits[name]

    def _masked_split(self) -> Split:
        split = next((s for s in (source.masked_split() for source in self.sources()) if s is not None), None)
        if split is None:
            raise DataError(f"{self.name}: none of {', '.join(self.params.eval_sources)} offers a test split with "
                            f"object masks under {self._root()}; the data root holds {WHERE}")
        return split

    def check(self, training: bool = True) -> None:
        """Everything a run will read, before it trains: the ImageNet folders (train only when it
        trains) and every evaluation source's own checks (IN-9 masks and names, CounterAnimal's folders)."""
        if training:
            self.split("train")
        if (self._root() / self.params.imagenet / "val").is_dir():
            self.split("val")
        self.split("test")
        for source in self.sources():
            source.check()

    def prepare(self, *, download: bool = False, force: bool = False) -> list[str]:
        """Checks, then decodes every file an evaluation reads (ImageNet val, every evaluation
        source); the ImageNet training images are counted, not decoded (a corrupt one is named
        when training reaches it). `downloads` are fetched when allowed; ImageNet and
        CounterAnimal have no public download."""
        lines = super().prepare(download=download, force=force)
        for name in ("val", "test"):
            if name != "val" or (self._root() / self.params.imagenet / "val").is_dir():
                decode_all(self.split(name))
        for eval_set in self.eval_sets():
            decode_all(eval_set.split)
            lines.append(f"{eval_set.name}: {len(eval_set.split)} images")
        lines.append("every evaluation image and mask decodes; ImageNet training images were counted, not decoded")
        return lines

    def _imagenet(self, name: str) -> FileSplit:
        folder = self._root() / self.params.imagenet / name
        if not folder.is_dir():
            raise DataError(f"ImageNet folder {str(folder)!r} not found: expected {name}/<wnid>/*.JPEG; the data "
                            f"root holds {WHERE}")
        paths, labels = class_folder(folder, self.wnids())
        return FileSplit(paths, labels, self.params.image_size)

    def eval_sets(self) -> list[EvalSet]:
        if self._sets is None:
            self._sets = [s for source in self.sources() for s in source.eval_sets()]
        return self._sets

    def derived(self, accuracy: dict[str, float]) -> dict[str, float]:
        return {k: v for source in self.sources() for k, v in source.derived(accuracy).items()}

    def groups(self, split: str) -> Groups | None:
        """`counteranimal`: CounterAnimal's (class, common or counter) groups, when its files are there."""
        if split != "counteranimal":
            return None
        source = next((s for s in self.sources() if s.name == "counteranimal"), None)
        return source.groups() if source is not None else None  # type: ignore[attr-defined]


def eval_source(name: str, root: Path, wnids: list[str], settings) -> EvalSource:
    """Evaluation source `name` built with the settings of `settings` that its Params declare."""
    cls = EVAL_SETS.get(name)
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(cls.Params) if hasattr(settings, f.name)}
    return cls(root, wnids, settings.image_size, cls.Params(**values))
