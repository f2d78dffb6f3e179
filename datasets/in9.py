"""ImageNet training with ImageNet-9 (Backgrounds Challenge) and CounterAnimal evaluation.

The model is a 1000-way ImageNet classifier trained (or fine-tuned) on an ImageNet folder; it is
scored on every IN-9 variant and, when present, on CounterAnimal's common and counter sets.
Layout under the data root (folder names are settings):
    imagenet/train/<wnid>/*.JPEG, imagenet/val/<wnid>/*.JPEG   class index = sorted wnids
    bg_challenge/<variant>/val/<NN_class name>/<image>        variants: original, only_fg, ...
    bg_challenge/fg_mask/val/<NN_class name>/<stem>.npy       foreground masks of `original`
    bg_challenge/in_to_in9.json                               ImageNet index -> IN-9 class or -1
    counteranimal/LAION-final/<index> <name>/{common,counter}-<background>/<image>
IN-9 label protocols (`dataset.labels`): `synset` (the H-SPLID paper: 1000-way top-1 against the
fine-grained synset in the file name) and `in9` (the Backgrounds Challenge: top-1 mapped to the 9
classes through in_to_in9.json, unmapped classes counted wrong). The `test` split is the original
variant with its foreground masks and synset labels, so attacks and attributions have an object.
ImageNet itself has no object masks: its splits carry empty masks (no pixel known as object).
Labels are mapped by synset (wnid), never by folder position: in_to_in9.json and CounterAnimal's
folders use the ImageNet-1k index, which `IMAGENET_WNIDS` (the 1,000 synsets in index order,
datasets/data/imagenet_wnids.txt) turns into a wnid, so an ImageNet folder with only some of the
classes is scored correctly, and what it cannot score is refused in one line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from benchmark.augment import flipped
from benchmark.data import Batch, BenchmarkDataset, DataInfo, Download, EvalSet, Split
from benchmark.errors import ConfigError, DataError
from benchmark.images import FileSplit, check_mask_size, image_size
from benchmark.registry import DATASETS
from benchmark.suites.attribution import quick_explainer_options

VARIANTS = ("original", "only_bg_b", "only_bg_t", "no_fg", "only_fg", "mixed_same", "mixed_rand", "mixed_next")
IN9_CLASSES = ("dog", "bird", "wheeled vehicle", "reptile", "carnivore", "insect", "musical instrument",
               "primate", "fish")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
SYNSET = re.compile(r"^(?:fg_)?(n\d{8})")
CA_CLASS = re.compile(r"^(\d+) (.+)$")
WNID = re.compile(r"^n\d{8}$")
IMAGENET_WNIDS = tuple((Path(__file__).with_name("data") / "imagenet_wnids.txt").read_text().split())
BG_REPOSITORY = "https://github.com/MadryLab/backgrounds_challenge"
WHERE = ("imagenet/train/<wnid>/*.JPEG (ImageNet-1k, by hand from image-net.org after registering), "
         "bg_challenge/ (`benchmark prepare in9 --download` fetches the Backgrounds Challenge data and "
         "in_to_in9.json from MadryLab/backgrounds_challenge) and, optionally, counteranimal/LAION-final/ "
         "(by hand from the CounterAnimal project); see docs/DATASETS.md")


@dataclass
class IN9Params:
    image_size: int = 224
    labels: Literal["synset", "in9"] = "synset"
    imagenet: str = "imagenet"
    backgrounds: str = "bg_challenge"
    counteranimal: str = "counteranimal"
    variants: tuple[str, ...] = VARIANTS
    weights: str | None = None  # ResNet-50 start: IMAGENET1K_V2 (torchvision cache) or a file

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise ConfigError(f"dataset.image_size must be >= 32, got {self.image_size}")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"dataset.variants: unknown IN-9 variant {unknown[0]!r}; expected some of "
                              f"{', '.join(VARIANTS)}")


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


def in9_class_dirs(variant_root: Path) -> list[Path]:
    """The nine class folders (00_dog ... 08_fish) in ImageFolder order."""
    if not variant_root.is_dir():
        raise DataError(f"IN-9 folder {str(variant_root)!r} not found: unpack backgrounds_challenge_data.tar.gz "
                        "(MadryLab/backgrounds_challenge release) into the data root")
    dirs = sorted(p for p in variant_root.iterdir() if p.is_dir())
    if len(dirs) != 9:
        raise DataError(f"{str(variant_root)!r}: expected the 9 class folders 00_dog ... 08_fish, found {len(dirs)}")
    return dirs


def synset_of(path: Path) -> str:
    match = SYNSET.match(path.name)
    if not match:
        raise DataError(f"IN-9 file {str(path)!r}: expected a name starting with the synset, <wnid>_... or fg_<wnid>_...")
    return match.group(1)


def in9_mapping(path: Path, wnids: list[str]) -> torch.Tensor:
    """Class k of the ImageNet folder (synset wnids[k]) -> IN-9 class, or -1 where unmapped, from the
    Backgrounds Challenge's in_to_in9.json (keyed by ImageNet-1k index: mapped through the wnid)."""
    if not path.is_file():
        raise DataError(f"{str(path)!r} not found: the 9-way protocol needs in_to_in9.json from "
                        f"{BG_REPOSITORY} (`benchmark prepare in9 --download` fetches it)")
    try:
        raw = json.loads(path.read_text())
        by_index = {int(key): int(value) for key, value in raw.items()}
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as err:
        raise DataError(f"{str(path)!r}: expected a JSON object of ImageNet index -> IN-9 class ({err})") from None
    if not all(-1 <= v < 9 for v in by_index.values()) or not all(0 <= k < 1000 for k in by_index):
        raise DataError(f"{str(path)!r}: expected ImageNet indices 0-999 mapped to IN-9 classes -1 or 0-8")
    table = [by_index.get(imagenet_index(w, str(path)), -1) for w in wnids]
    return torch.tensor(table, dtype=torch.int64)


def mapped_prediction(table: torch.Tensor):
    """A predict function: top-1 ImageNet class through `table` (unmapped classes give -1, never right)."""
    def predict(logits: torch.Tensor) -> torch.Tensor:
        return table.to(logits.device)[logits.argmax(dim=1)]
    return predict


def fg_mask(path: Path) -> np.ndarray:
    """An IN-9 foreground mask (.npy, 2-D or with a channel axis) as (H, W) uint8 in {0, 1}."""
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"IN-9 foreground mask {str(path)!r} not found") from None
    except Exception as err:  # empty (EOFError), truncated or foreign files
        raise DataError(f"IN-9 foreground mask {str(path)!r} is not a readable .npy array "
                        f"({type(err).__name__})") from None
    if array.ndim == 3:
        array = array.max(axis=-1) if array.shape[-1] in (1, 3, 4) else array.max(axis=0)
    if array.ndim != 2:
        raise DataError(f"IN-9 foreground mask {str(path)!r}: expected a 2-D array, got shape {array.shape}")
    return (array > 0).astype(np.uint8)


def mask_header_shape(path: Path) -> tuple[int, ...]:
    """The shape a .npy mask declares in its header, read without loading the array."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, _ = read(fh)
    except FileNotFoundError:
        raise DataError(f"IN-9 foreground mask {str(path)!r} not found") from None
    except Exception as err:
        raise DataError(f"IN-9 foreground mask {str(path)!r} is not a readable .npy array "
                        f"({type(err).__name__})") from None
    return tuple(shape)


def check_fg_mask(path: Path, image: Path) -> None:
    """Header-only check that a foreground mask exists, parses and matches its image's size."""
    shape = mask_header_shape(path)
    if len(shape) == 3:
        shape = shape[:2] if shape[-1] in (1, 3, 4) else shape[1:]
    if len(shape) != 2:
        raise DataError(f"IN-9 foreground mask {str(path)!r}: expected a 2-D array, got shape {shape}")
    h, w = image_size(image)
    check_mask_size(np.empty(shape, dtype=bool), image, h, w)


@DATASETS.register("in9")
class ImageNet9(BenchmarkDataset):
    """ImageNet training, scored on every ImageNet-9 variant (BG-gap) and CounterAnimal (counter drop)."""

    Params = IN9Params
    preset = "imagenet"
    selection_eps = 1 / 255  # the paper's ImageNet selection eps
    # The Backgrounds Challenge test data (a release asset) and its ImageNet -> IN-9 table.
    downloads = (Download(f"{BG_REPOSITORY}/releases/download/data/backgrounds_challenge_data.tar.gz",
                          present="bg_challenge/original"),
                 Download("https://raw.githubusercontent.com/MadryLab/backgrounds_challenge/master/in_to_in9.json",
                          into="bg_challenge", present="bg_challenge/in_to_in9.json"))

    def __init__(self, params: IN9Params | None = None, data_root: Path | None = None):
        super().__init__(params, data_root)
        self._wnids: list[str] | None = None
        self._splits: dict[str, Split] = {}
        self._sets: list[EvalSet] | None = None

    # -- paths and label spaces -------------------------------------------------------------
    def _root(self) -> Path:
        if self.data_root is None:
            raise DataError(f"{self.name} needs --data-root DIR (or BENCHMARK_DATA_ROOT) holding {WHERE}")
        return Path(self.data_root)

    def wnids(self) -> list[str]:
        if self._wnids is None:
            self._wnids = imagenet_wnids(self._root() / self.params.imagenet)
        return self._wnids

    @property
    def info(self) -> DataInfo:
        size, wnids = self.params.image_size, self.wnids()
        return DataInfo(num_classes=len(wnids), class_names=tuple(wnids), input_shape=(3, size, size),
                        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), encoder="resnet50",
                        encoder_args={"weights": self.params.weights} if self.params.weights else {})

    @classmethod
    def defaults(cls, profile: str) -> dict:
        """Quick: a smoke run (1,024 training images at 112 px, one epoch, 256 images per eval
        set, every explainer on 16 images with lighter settings). Paper: 20 epochs from
        torchvision's ResNet-50 IMAGENET1K_V2 at LR 5e-4, batch 256."""
        if profile == "paper":
            return {"dataset": {"weights": "IMAGENET1K_V2"},
                    "train": {"epochs": 20, "batch_size": 256, "lr": 5e-4, "augment": True},
                    "eval": {"suites": ("accuracy", "robustness", "attribution")},
                    "robustness": {"grid": {"pgd": {"background": [1 / 255, 2 / 255], "full": [1 / 255]}},
                                   "samples": 1000},
                    "attribution": {"samples": 256}}
        return {"dataset": {"image_size": 112},
                "train": {"epochs": 1, "batch_size": 32, "lr": 5e-4, "samples": 1024},
                "eval": {"suites": ("accuracy", "robustness", "attribution"), "samples": 256, "batch_size": 64},
                "robustness": {"grid": {"pgd": {"background": [1 / 255], "full": [1 / 255]}}, "samples": 64},
                "attribution": {"samples": 16, "faithfulness_samples": 8, "options": quick_explainer_options(112)}}

    def source(self) -> str:
        return f"ImageNet, IN-9 and CounterAnimal folders in {self.data_root}"

    def augment(self, batch: Batch, generator: torch.Generator) -> Batch:
        return flipped(batch, generator)

    # -- splits and eval sets ---------------------------------------------------------------
    def split(self, name: str) -> Split:
        if name not in self.split_names:
            return super().split(name)
        if name not in self._splits:
            self._splits[name] = self._original() if name == "test" else self._imagenet(name)
        return self._splits[name]

    def check(self) -> None:
        """Everything a run will read, before it trains: the ImageNet folders, every IN-9 variant
        (file names carry a synset of the folder), the header of every foreground mask against its
        image's size, in_to_in9.json for the 9-way protocol, and CounterAnimal's class folders."""
        self.split("train")
        if (self._root() / self.params.imagenet / "val").is_dir():
            self.split("val")
        test = self.split("test")
        masks = self._mask_folder()
        for path in test.paths:
            check_fg_mask(masks / path.parent.name / f"{path.stem}.npy", path)
        self.eval_sets()

    def prepare(self, *, download: bool = False, force: bool = False) -> list[str]:
        """Checks, then decodes every file an evaluation reads (ImageNet val, every IN-9 variant and
        its masks, CounterAnimal); the ImageNet training images are counted, not decoded (a
        corrupt one is named when training reaches it). The IN-9 archive and in_to_in9.json
        (`downloads`) are fetched when allowed; ImageNet and CounterAnimal have no public download."""
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

    def _variant(self, variant: str) -> tuple[list[Path], list[int], list[int]]:
        """Files of one IN-9 variant with their class index in the ImageNet folder and 9-way class."""
        index = {w: i for i, w in enumerate(self.wnids())}
        paths, synsets, classes = [], [], []
        for k, folder in enumerate(in9_class_dirs(self._root() / self.params.backgrounds / variant / "val")):
            for path in images_in(folder):
                wnid = synset_of(path)
                if wnid not in index:
                    raise DataError(f"IN-9 file {str(path)!r}: synset {wnid} is not among the {len(index)} classes of "
                                    "the ImageNet folder, so the synset protocol cannot score it (use "
                                    "dataset.labels=in9, or an ImageNet folder with that class)")
                paths.append(path)
                synsets.append(index[wnid])
                classes.append(k)
        return paths, synsets, classes

    def _mask_folder(self) -> Path:
        return self._root() / self.params.backgrounds / "fg_mask" / "val"

    def _original(self) -> FileSplit:
        paths, synsets, _ = self._variant("original")
        masks = self._mask_folder()
        return FileSplit(paths, synsets, self.params.image_size,
                         mask_of=lambda k: fg_mask(masks / paths[k].parent.name / f"{paths[k].stem}.npy"))

    def eval_sets(self) -> list[EvalSet]:
        if self._sets is None:
            self._sets = self._eval_sets()
        return self._sets

    def _eval_sets(self) -> list[EvalSet]:
        p: IN9Params = self.params
        root = self._root()
        sets = []
        predict = None
        if p.labels == "in9":
            predict = mapped_prediction(in9_mapping(root / p.backgrounds / "in_to_in9.json", self.wnids()))
        for variant in p.variants:
            paths, synsets, classes = self._variant(variant)
            if p.labels == "in9":
                sets.append(EvalSet(f"in9_{variant}", FileSplit(paths, classes, p.image_size), predict))
            else:
                sets.append(EvalSet(f"in9_{variant}", FileSplit(paths, synsets, p.image_size)))
        counter = root / p.counteranimal / "LAION-final"
        if counter.is_dir():
            for kind, (paths, labels) in counteranimal(counter, self.wnids()).items():
                sets.append(EvalSet(f"counteranimal_{kind}", FileSplit(paths, labels, p.image_size)))
        return sets

    def derived(self, accuracy: dict[str, float]) -> dict[str, float]:
        """BG-gap = acc(mixed_same) - acc(mixed_rand); counter drop = acc(common) - acc(counter)."""
        out = {}
        if {"in9_mixed_same", "in9_mixed_rand"} <= set(accuracy):
            out["bg_gap"] = accuracy["in9_mixed_same"] - accuracy["in9_mixed_rand"]
        if {"counteranimal_common", "counteranimal_counter"} <= set(accuracy):
            out["counter_drop"] = accuracy["counteranimal_common"] - accuracy["counteranimal_counter"]
        return out


def decode_all(split: FileSplit, chunk: int = 64) -> None:
    """Decode every image (and mask) of a file-backed split once: a bad file is a one-line DataError."""
    for start in range(0, len(split), chunk):
        split.batch(torch.arange(start, min(start + chunk, len(split))))


def counteranimal(root: Path, wnids: list[str]) -> dict[str, tuple[list[Path], list[int]]]:
    """CounterAnimal's common and counter images with their class index in the ImageNet folder (the
    1-vs-1000 protocol); a class folder names its ImageNet-1k index, mapped through its synset."""
    local = {w: i for i, w in enumerate(wnids)}
    out: dict[str, tuple[list[Path], list[int]]] = {"common": ([], []), "counter": ([], [])}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        match = CA_CLASS.match(folder.name)
        if not match or int(match.group(1)) >= len(IMAGENET_WNIDS):
            raise DataError(f"CounterAnimal folder {str(folder)!r}: expected '<ImageNet index> <class name>' with an "
                            f"ImageNet-1k index 0-999")
        wnid = IMAGENET_WNIDS[int(match.group(1))]
        if wnid not in local:
            raise DataError(f"CounterAnimal folder {str(folder)!r} is ImageNet class {match.group(1)} ({wnid}), which "
                            f"the ImageNet folder's {len(local)} classes do not include; add that class or move "
                            "CounterAnimal out of the data root (dataset.counteranimal names its folder)")
        for background in sorted(p for p in folder.iterdir() if p.is_dir()):
            kind = background.name.split("-", 1)[0]
            if kind not in out:
                raise DataError(f"CounterAnimal folder {str(background)!r}: expected common-<background> or "
                                "counter-<background>")
            for path in images_in(background):
                out[kind][0].append(path)
                out[kind][1].append(local[wnid])
    return out
