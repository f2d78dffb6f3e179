"""ISIC-2017 skin lesions: nevus, melanoma, seborrheic keratosis, with the lesion as the object.

Layout under the data root (the official challenge archives, unpacked side by side), for each
part P of Training, Validation and Test_v2:
    ISIC-2017_P_Data/ISIC_<7 digits>.jpg                    (superpixel PNGs and metadata CSV ignored)
    ISIC-2017_P_Part1_GroundTruth/ISIC_<id>_segmentation.png (0 outside, 255 on the lesion)
    ISIC-2017_P_Part3_GroundTruth.csv                         (image_id, melanoma, seborrheic_keratosis)
Labels: nevus 0 (both flags 0), melanoma 1, seborrheic keratosis 2. Protocol of the reference:
Training and Validation pooled and split 80/20 (seeded), Test_v2 as the test set, class-balanced
cross-entropy, attacks and corruptions on the skin around the lesion.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.data.images import decode_split, read_mask
from benchmark.data.split import DataInfo, TensorSplit
from benchmark.dataset import InMemoryDataset, Ranking
from benchmark.errors import ConfigError, DataError
from benchmark.registry import DATASETS
from benchmark.suites.attribution import quick_explainer_options

CLASSES = ("nevus", "melanoma", "seborrheic_keratosis")
PARTS = {"Training": 2000, "Validation": 150, "Test_v2": 600}  # published image counts
CORRUPTIONS = {"brightness": [1, 3, 5], "defocus_blur": [1, 3, 5], "snow": [1, 3, 5]}


@dataclass
class ISICParams:
    image_size: int = 224
    split_seed: int = 0
    val_fraction: float = 0.2  # of Training + Validation pooled

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise ConfigError(f"dataset.image_size must be >= 32, got {self.image_size}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"dataset.val_fraction must be in (0, 1), got {self.val_fraction}")


def label_of(row: dict[str, str], where: str) -> int:
    """The 3-class label from the Part 3 flags (strings such as '0.0' or '1')."""
    try:
        melanoma, keratosis = float(row["melanoma"]), float(row["seborrheic_keratosis"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: expected numeric melanoma and seborrheic_keratosis columns, got {row}") from None
    if melanoma not in (0.0, 1.0) or keratosis not in (0.0, 1.0) or melanoma + keratosis > 1:
        raise DataError(f"{where}: image {row.get('image_id')!r} has flags melanoma={melanoma}, "
                        f"seborrheic_keratosis={keratosis}; expected at most one of them set to 1")
    return 1 if melanoma else 2 if keratosis else 0


def read_part(root: Path, part: str) -> list[tuple[str, int]]:
    """(image id, label) of one part, in the CSV's order."""
    path = root / f"ISIC-2017_{part}_Part3_GroundTruth.csv"
    if not path.is_file():
        raise DataError(f"ISIC-2017 labels {str(path)!r} not found: unpack the {part} Part 3 ground truth "
                        "(challenge.isic-archive.com) into the data root")
    try:  # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the first column's name
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{str(path)!r} is not a text CSV ({type(err).__name__}); expected columns image_id, "
                        "melanoma, seborrheic_keratosis") from None
    if not rows or "image_id" not in rows[0]:
        raise DataError(f"{str(path)!r}: expected a CSV with columns image_id, melanoma, seborrheic_keratosis")
    return [(row["image_id"], label_of(row, str(path))) for row in rows]


def split_positions(n: int, seed: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train and validation positions of range(n) from one seeded permutation."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = round(val_fraction * n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@DATASETS.register("isic2017")
class ISIC2017(InMemoryDataset):
    """ISIC-2017: 3-way lesion diagnosis (nevus, melanoma, seborrheic keratosis), object = the lesion."""

    Params = ISICParams
    default_model = {"encoder": "resnet50"}
    ranking = Ranking("corrupted_accuracy", region="background", label="mean accuracy under background corruptions")
    downloads = tuple(f"https://isic-challenge-data.s3.amazonaws.com/2017/ISIC-2017_{part}_{what}"
                      for part in PARTS for what in ("Data.zip", "Part1_GroundTruth.zip", "Part3_GroundTruth.csv"))

    @property
    def info(self) -> DataInfo:
        size = self.params.image_size
        return DataInfo(num_classes=3, class_names=CLASSES, input_shape=(3, size, size),
                        mean=(0.7232, 0.6168, 0.5692), std=(0.1668, 0.1750, 0.1955))

    @classmethod
    def defaults(cls, profile: str) -> dict:
        """Quick: ResNet-50 from scratch at 112 px for two epochs (the published start, ImageNet
        weights, needs their file: --set model.weights=IMAGENET1K_V2). Paper: 224 px, 50 epochs at
        LR 5e-5 and batch 32 from a vanilla ISIC checkpoint (`train.init_from=run:vanilla`: the same
        schedule from ImageNet weights, trained once per seed), background corruptions at severities
        1, 3, 5."""
        suites = ("accuracy", "robustness", "corruptions", "attribution")
        if profile == "paper":
            return {"model": {"weights": "IMAGENET1K_V2"},
                    "train": {"epochs": 50, "batch_size": 32, "lr": 5e-5, "class_balanced": True, "augment": False,
                              "init_from": "run:vanilla"},
                    "eval": {"suites": suites},
                    "robustness": {"grid": {"pgd": {"background": [1 / 255, 2 / 255, 3 / 255], "full": [1 / 255]},
                                            "autoattack-rand": {"background": [3 / 255]}},
                                   "options": {"autoattack-rand": {"steps": 10, "eot": 20}},
                                   "seeds": (0, 1, 2, 3, 4), "samples": None},
                    "corruptions": {"grid": CORRUPTIONS, "region": "background", "seeds": (0, 1, 2, 3, 4),
                                    "samples": None},
                    "attribution": {"samples": 256}}
        return {"dataset": {"image_size": 112},
                "train": {"epochs": 2, "batch_size": 32, "lr": 5e-5, "class_balanced": True},
                "eval": {"suites": suites},
                "robustness": {"grid": {"pgd": {"background": [1 / 255, 3 / 255], "full": [1 / 255]}}, "samples": 128},
                "corruptions": {"grid": CORRUPTIONS, "region": "background", "samples": 128},
                "attribution": {"samples": 16, "faithfulness_samples": 8,
                                "options": quick_explainer_options(112)}}

    def prepare(self, *, download: bool = False, force: bool = False) -> list[str]:
        """The InMemoryDataset preparation, plus each archive part's image count against the published one."""
        lines = super().prepare(download=download, force=force)
        for part, published in PARTS.items():
            found = len(read_part(Path(self.data_root), part))
            note = "" if found == published else f" (published: {published}; a subset or another release?)"
            lines.append(f"{part}: {found} images{note}")
        return lines

    def source(self) -> str:
        return f"ISIC-2017 archives in {self.data_root}"

    def source_files(self) -> list[Path]:
        root = Path(self.data_root)
        return [root / f"ISIC-2017_{part}_{what}" for part in PARTS
                for what in ("Part3_GroundTruth.csv", "Data", "Part1_GroundTruth")]

    def load_splits(self) -> dict[str, TensorSplit]:
        p: ISICParams = self.params
        root = self.require_root("the unpacked ISIC-2017 Training, Validation and Test_v2 archives "
                                 "(docs/DATASETS.md: ISIC-2017)")
        parts = {part: [(part, image_id, label) for image_id, label in read_part(root, part)] for part in PARTS}
        pooled = parts["Training"] + parts["Validation"]
        train, val = split_positions(len(pooled), p.split_seed, p.val_fraction)
        chosen = {"train": [pooled[i] for i in train], "val": [pooled[i] for i in val], "test": parts["Test_v2"]}
        return {name: self._decode(root, items) for name, items in chosen.items()}

    def _decode(self, root: Path, items: list[tuple[str, str, int]]) -> TensorSplit:
        def image_of(k: int) -> Path:
            part, image_id, _ = items[k]
            return root / f"ISIC-2017_{part}_Data" / f"{image_id}.jpg"

        def mask_of(k: int) -> np.ndarray:
            part, image_id, _ = items[k]
            return read_mask(root / f"ISIC-2017_{part}_Part1_GroundTruth" / f"{image_id}_segmentation.png")

        return decode_split([label for *_, label in items], self.params.image_size, image_of, mask_of)
