"""Waterbirds (Sagawa et al. 2020): CUB-200-2011 birds pasted onto Places backgrounds, water and
land backgrounds correlated with the label (water birds on water, land birds on land) in 95 % of
the training images; validation and test are balanced. Object = the bird.

Layout under the data root, both archives unpacked as published:
    waterbird_complete95_forest2water2/metadata.csv   img_id, img_filename, y, split, place, place_filename
    waterbird_complete95_forest2water2/<CUB class folder>/<image>.jpg
    segmentations/<CUB class folder>/<image stem>.png  (CUB-200-2011's segmentations archive)
Labels `y`: 0 land bird, 1 water bird; `place`: 0 land, 1 water; `split`: 0 train, 1 val, 2 test.

How the masks align: the published generation script crops and resizes each Places background to
the CUB image's size and pastes the bird through CUB's own segmentation of that image (background
times (1 - s) plus bird times s, s = segmentation / 255). A Waterbirds image therefore has its
CUB image's size, and the CUB segmentation PNG of the same class folder and stem is its bird mask,
pixel for pixel: here it is read as is and thresholded at half intensity (the PNGs are soft where
annotators disagreed).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.data.images import decode_split, read_mask
from benchmark.data.split import DataInfo, Groups, TensorSplit
from benchmark.dataset import InMemoryDataset, Ranking
from benchmark.errors import ConfigError, DataError
from benchmark.registry import DATASETS
from benchmark.suites.attribution import quick_explainer_options

FOLDER = "waterbird_complete95_forest2water2"
SEGMENTATIONS = "segmentations"
CLASSES = ("landbird", "waterbird")
PLACES = ("land", "water")
SPLITS = {"train": "0", "val": "1", "test": "2"}
COLUMNS = ("img_id", "img_filename", "y", "split", "place")
PUBLISHED = {"train": 4795, "val": 1199, "test": 5794}


@dataclass
class WaterbirdsParams:
    image_size: int = 224

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise ConfigError(f"dataset.image_size must be >= 32, got {self.image_size}")


@dataclass(frozen=True)
class Item:
    path: str  # img_filename: <CUB class folder>/<image>.jpg
    label: int
    place: int


def read_metadata(root: Path) -> dict[str, list[Item]]:
    """The images of each split in metadata.csv's order; anything unreadable is one DataError."""
    path = root / FOLDER / "metadata.csv"
    if not path.is_file():
        raise DataError(f"Waterbirds metadata {str(path)!r} not found: unpack the Waterbirds tarball "
                        f"(its folder {FOLDER}/) into the data root")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{str(path)!r} is not a text CSV ({type(err).__name__}); expected columns "
                        f"{', '.join(COLUMNS)}") from None
    if not rows or any(c not in rows[0] for c in COLUMNS):
        raise DataError(f"{str(path)!r}: expected a CSV with columns {', '.join(COLUMNS)}")
    out: dict[str, list[Item]] = {name: [] for name in SPLITS}
    names = {code: name for name, code in SPLITS.items()}
    for row in rows:
        if row["split"] not in names or row["y"] not in ("0", "1") or row["place"] not in ("0", "1"):
            raise DataError(f"{str(path)!r}: image {row.get('img_id')!r} has split={row['split']!r}, "
                            f"y={row['y']!r}, place={row['place']!r}; expected split 0/1/2, y and place 0/1")
        out[names[row["split"]]].append(Item(row["img_filename"], int(row["y"]), int(row["place"])))
    return out


@DATASETS.register("waterbirds")
class Waterbirds(InMemoryDataset):
    """Waterbirds: land vs water birds on land or water backgrounds (95 % correlated in training)."""

    Params = WaterbirdsParams
    default_model = {"encoder": "resnet50"}
    ranking = Ranking("worst_group_accuracy", label="worst-group test accuracy (Sagawa et al. 2020)")

    @property
    def info(self) -> DataInfo:
        size = self.params.image_size
        return DataInfo(num_classes=2, class_names=CLASSES, input_shape=(3, size, size),
                        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

    @classmethod
    def defaults(cls, profile: str) -> dict:
        """Quick: ResNet-50 from scratch at 112 px for two epochs (ImageNet weights, as the
        literature starts, need their file: --set model.weights=IMAGENET1K_V2). Paper: ImageNet
        ResNet-50 at 224 px for 300 epochs at batch 128 as group DRO's ERM, with the engine's Adam
        at 1e-4 instead of SGD at 1e-3; background attacks and corruptions, worst-group accuracy."""
        suites = ("accuracy", "group_accuracy", "robustness", "corruptions", "attribution")
        if profile == "paper":
            return {"model": {"weights": "IMAGENET1K_V2"},
                    "train": {"epochs": 300, "batch_size": 128, "lr": 1e-4},
                    "eval": {"suites": suites},
                    "robustness": {"grid": {"pgd": {"background": [1 / 255, 2 / 255, 4 / 255], "full": [1 / 255]}},
                                   "seeds": (0, 1, 2), "samples": None},
                    "corruptions": {"region": "background", "samples": None},
                    "attribution": {"samples": 256}}
        return {"dataset": {"image_size": 112},
                "train": {"epochs": 2, "batch_size": 32, "lr": 1e-4},
                "eval": {"suites": suites},
                "robustness": {"grid": {"pgd": {"background": [1 / 255, 4 / 255], "full": [1 / 255]}}, "samples": 128},
                "corruptions": {"region": "background", "samples": 128},
                "attribution": {"samples": 16, "faithfulness_samples": 8, "options": quick_explainer_options(112)}}

    def prepare(self, *, download: bool = False, force: bool = False) -> list[str]:
        """The InMemoryDataset preparation, plus each split's image and group counts."""
        lines = super().prepare(download=download, force=force)
        for name, items in read_metadata(Path(self.data_root)).items():
            note = "" if len(items) == PUBLISHED[name] else f" (published: {PUBLISHED[name]})"
            counts = np.bincount([2 * i.label + i.place for i in items], minlength=4)
            lines.append(f"{name}: {len(items)} images{note}; " + ", ".join(
                f"{CLASSES[g // 2]} on {PLACES[g % 2]} {counts[g]}" for g in range(4)))
        return lines

    def source(self) -> str:
        return f"Waterbirds and CUB-200-2011 segmentations in {self.data_root}"

    def source_files(self) -> list[Path]:
        root = Path(self.data_root)
        return [root / FOLDER, root / SEGMENTATIONS]

    def load_splits(self) -> dict[str, TensorSplit]:
        root = self.require_root(f"{FOLDER}/ (the Waterbirds tarball) and {SEGMENTATIONS}/ (CUB-200-2011's "
                                 "segmentations), docs/DATASETS.md: Waterbirds")
        if not (root / SEGMENTATIONS).is_dir():
            raise DataError(f"no {SEGMENTATIONS}/ folder in {str(root)!r}: unpack CUB-200-2011's segmentations "
                            "archive there (the bird masks)")
        return {name: self._decode(root, items) for name, items in read_metadata(root).items()}

    def groups(self, split: str) -> Groups | None:
        """Four groups: (land bird, water bird) x (land, water background), as Sagawa et al."""
        if split not in SPLITS:
            return None
        items = read_metadata(self.root())[split]
        return Groups(torch.tensor([2 * i.label + i.place for i in items], dtype=torch.int64),
                      tuple(f"{c} on {p}" for c in CLASSES for p in PLACES), "(bird type, background type)")

    def _decode(self, root: Path, items: list[Item]) -> TensorSplit:
        def image_of(k: int) -> Path:
            return root / FOLDER / items[k].path

        def mask_of(k: int) -> np.ndarray:
            path = root / SEGMENTATIONS / Path(items[k].path).with_suffix(".png")
            if not path.is_file():
                raise DataError(f"no bird mask {str(path)!r} for {items[k].path!r}: expected CUB-200-2011's "
                                f"segmentation PNG of the same class folder and image stem")
            return read_mask(path)

        return decode_split([i.label for i in items], self.params.image_size, image_of, mask_of)
