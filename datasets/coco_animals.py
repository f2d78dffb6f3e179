"""COCO-Animals: COCO 2017 images of bears, elephants, giraffes and zebras, with instance masks.

Layout under the data root (the official COCO 2017 archives, unpacked):
    annotations/instances_train2017.json     (annotations_trainval2017.zip)
    train2017/<12-digit id>.jpg              (train2017.zip)
The image set is computed, not listed: every image that shows exactly one of the four classes
(images with two or more of them are dropped). The label is that class; the object mask is the
union of its instance masks (polygons and RLE alike, through pycocotools). Train, validation and
test are disjoint, deterministic splits of those images (the public H-SPLID code draws them with
replacement from one stream, so its test set overlaps its training set; docs/DATASETS.md).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.data.augment import flipped
from benchmark.data.images import decode_split
from benchmark.data.split import Batch, DataInfo, TensorSplit
from benchmark.dataset import InMemoryDataset, Ranking
from benchmark.errors import ConfigError, DataError
from benchmark.registry import DATASETS
from benchmark.suites.attribution import quick_explainer_options

CLASSES = ("bear", "elephant", "giraffe", "zebra")  # labels 0-3, as the reference
ROBUST_GRID_PAPER = {  # the paper's PGD protocol (eps in [0,1] units)
    "pgd": {"background": [1 / 255, 2 / 255, 3 / 255], "block": [25 / 255, 128 / 255, 1.0], "full": [1 / 255, 2 / 255]},
    "autoattack-rand": {"background": [3 / 255], "full": [2 / 255]},
}


@dataclass
class COCOAnimalsParams:
    image_size: int = 224
    annotations: str = "train2017"  # instances_<this>.json and the image folder <this>/
    split_seed: int = 0
    test_fraction: float = 0.2  # of all selected images (paper: 1,411 of 7,047)
    val_fraction: float = 0.2  # of the rest (paper: 1,127 of 5,636)

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise ConfigError(f"dataset.image_size must be >= 32, got {self.image_size}")
        for key in ("test_fraction", "val_fraction"):
            if not 0 < getattr(self, key) < 1:
                raise ConfigError(f"dataset.{key} must be in (0, 1), got {getattr(self, key)}")


def read_coco(path: Path):
    """pycocotools' COCO index of an instances file; a missing or malformed file is one DataError."""
    from pycocotools.coco import COCO

    if not path.is_file():
        raise DataError(f"COCO annotations {str(path)!r} not found: unpack annotations_trainval2017.zip "
                        "(cocodataset.org) into the data root")
    try:
        with open(path, "rb") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"COCO annotations {str(path)!r} are not a COCO instances file: not readable JSON "
                        f"({type(err).__name__})") from None
    problem = instances_problem(data)
    if problem:
        raise DataError(f"COCO annotations {str(path)!r} are not a COCO instances file: {problem}")
    coco = COCO()
    coco.dataset = data
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco.createIndex()
    except (AssertionError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"COCO annotations {str(path)!r} are not a COCO instances file "
                        f"({type(err).__name__}: {err})") from None
    return coco


def instances_problem(data) -> str:
    """What makes parsed JSON unusable as a COCO instances file ('' when nothing does): the three
    lists, and on every entry the keys and types the loader reads."""
    if not isinstance(data, dict):
        return f"expected a JSON object with images, annotations and categories, got a {type(data).__name__}"
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            return f"expected a list under {key!r}"
    for image in data["images"]:
        if not isinstance(image, dict) or not isinstance(image.get("file_name"), str) \
                or not all(isinstance(image.get(k), int) for k in ("id", "height", "width")):
            return f"image entry {_short(image)} lacks an integer id, height or width or a file_name"
    for ann in data["annotations"]:
        problem = annotation_problem(ann)
        if problem:
            return problem
    for cat in data["categories"]:
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
            return f"category {_short(cat)} lacks an integer id or a name"
    return ""


def annotation_problem(ann) -> str:
    """What makes one annotation unreadable ('' when nothing does)."""
    if not isinstance(ann, dict) or not all(isinstance(ann.get(k), int) for k in ("id", "image_id", "category_id")):
        return f"annotation {_short(ann)} lacks an integer id, image_id or category_id"
    seg = ann.get("segmentation")
    polygons = isinstance(seg, list) and all(isinstance(p, list) for p in seg)
    rle = isinstance(seg, dict) and "counts" in seg and isinstance(seg.get("size"), list)
    if not (polygons or rle):
        return (f"annotation {ann['id']} has a segmentation of type {type(seg).__name__}; expected a list of "
                "polygons or an RLE object with counts and size")
    return ""


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def category_ids(coco) -> list[int]:
    """COCO category id of each class, in label order."""
    ids = []
    for name in CLASSES:
        found = coco.getCatIds(catNms=[name])
        if len(found) != 1:
            raise DataError(f"COCO annotations: expected one category named {name!r}, found {len(found)}")
        ids.append(found[0])
    return ids


def single_class_images(coco, cat_ids: list[int]) -> tuple[list[tuple[int, int]], int]:
    """(image id, label) of every image showing exactly one of the classes, sorted by id, and the
    number of images dropped for showing several."""
    present: dict[int, set[int]] = {}
    for label, cat in enumerate(cat_ids):
        for image_id in coco.getImgIds(catIds=[cat]):  # one id at a time: several would intersect
            present.setdefault(image_id, set()).add(label)
    kept = sorted((i, next(iter(labels))) for i, labels in present.items() if len(labels) == 1)
    return kept, len(present) - len(kept)


def object_mask(coco, image_id: int, cat_id: int) -> np.ndarray:
    """Union of the image's instance masks of one category (crowd RLEs included), (H, W) uint8."""
    anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id, catIds=[cat_id], iscrowd=None))
    info = coco.loadImgs(image_id)[0]
    mask = np.zeros((info["height"], info["width"]), dtype=np.uint8)
    with warnings.catch_warnings():  # pycocotools' decoder predates NumPy 2's copy keyword
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        for ann in anns:
            mask |= coco.annToMask(ann).astype(np.uint8)
    return mask


def split_positions(n: int, seed: int, test_fraction: float, val_fraction: float) -> dict[str, np.ndarray]:
    """Disjoint train / val / test positions of range(n) from one seeded permutation."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = round(test_fraction * n)
    rest = perm[n_test:]
    n_val = round(val_fraction * len(rest))
    return {"train": np.sort(rest[n_val:]), "val": np.sort(rest[:n_val]), "test": np.sort(perm[:n_test])}


@DATASETS.register("coco_animals")
class COCOAnimals(InMemoryDataset):
    """COCO-Animals: bear, elephant, giraffe, zebra from COCO 2017, object = the instances' union mask."""

    Params = COCOAnimalsParams
    default_model = {"encoder": "resnet18", "options": {"batch_norm": False}}  # the reference: no BatchNorm
    ranking = Ranking("robust_accuracy", "pgd", "background", 3 / 255, "PGD on the background, eps 3/255")
    downloads = ("http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                 "http://images.cocodataset.org/zips/train2017.zip")  # 241 MB and 19 GB

    @property
    def info(self) -> DataInfo:
        size = self.params.image_size
        return DataInfo(num_classes=4, class_names=CLASSES, input_shape=(3, size, size),
                        mean=(0.4785, 0.4678, 0.3966), std=(0.2466, 0.2396, 0.2494))

    @classmethod
    def defaults(cls, profile: str) -> dict:
        """Quick: two epochs at 112 px, PGD on background, block and full image on 128 test images.
        Paper: 224 px, 200 epochs at LR 5e-4 and batch 256 from a 100-epoch vanilla pre-training
        (`train.init_from=run:vanilla`, trained once per seed), the paper's eps grid and 5 attack seeds."""
        suites = ("accuracy", "robustness", "attribution")
        if profile == "paper":
            return {"train": {"epochs": 200, "batch_size": 256, "lr": 5e-4, "augment": True,
                              "init_from": "run:vanilla"},
                    "eval": {"suites": suites},
                    "robustness": {"grid": ROBUST_GRID_PAPER, "seeds": (0, 1, 2, 3, 4), "samples": None,
                                   "options": {"autoattack-rand": {"steps": 10, "eot": 20}}},
                    "attribution": {"samples": 512}}
        return {"dataset": {"image_size": 112},
                "train": {"epochs": 2, "batch_size": 32, "lr": 5e-4},
                "eval": {"suites": suites},
                "robustness": {"grid": {"pgd": {"background": [1 / 255, 3 / 255], "block": [25 / 255],
                                                "full": [2 / 255]}}, "samples": 128},
                "attribution": {"samples": 16, "faithfulness_samples": 8,
                                "options": quick_explainer_options(112)}}

    @classmethod
    def start(cls, profile: str) -> dict:
        """The paper's starting weights: 100 vanilla epochs (then every method trains 200 from them)."""
        return {"train": {"epochs": 100}} if profile == "paper" else {}

    def augment(self, batch: Batch, generator: torch.Generator) -> Batch:
        return flipped(batch, generator)

    def source(self) -> str:
        return f"COCO 2017 {self.params.annotations} in {self.data_root}"

    @property
    def annotation_file(self) -> Path:
        return Path(self.data_root) / "annotations" / f"instances_{self.params.annotations}.json"

    def source_files(self) -> list[Path]:
        return [self.annotation_file, Path(self.data_root) / self.params.annotations]

    def count_lines(self) -> list[str]:
        dropped = self.counts.get("dropped_multi_class", 0)
        return [f"dropped {dropped} images showing two or more of {', '.join(CLASSES)}"]

    def load_splits(self) -> dict[str, TensorSplit]:
        p: COCOAnimalsParams = self.params
        root = self.require_root(f"the COCO 2017 layout annotations/instances_{p.annotations}.json and "
                                 f"{p.annotations}/*.jpg (docs/DATASETS.md: COCO-Animals)")
        coco = read_coco(self.annotation_file)
        cat_ids = category_ids(coco)
        images, dropped = single_class_images(coco, cat_ids)
        self.counts = {"dropped_multi_class": dropped}
        if len(images) < 3:
            raise DataError(f"COCO annotations in {str(root)!r}: expected at least 3 images showing exactly one of "
                            f"{', '.join(CLASSES)}, found {len(images)}")
        folder = root / p.annotations
        if not folder.is_dir():
            raise DataError(f"COCO image folder {str(folder)!r} not found: unpack {p.annotations}.zip into the "
                            "data root")
        positions = split_positions(len(images), p.split_seed, p.test_fraction, p.val_fraction)
        return {name: self._decode([images[i] for i in pos], coco, cat_ids, folder) for name, pos in positions.items()}

    def _decode(self, items: list[tuple[int, int]], coco, cat_ids: list[int], folder: Path) -> TensorSplit:
        def image_of(k: int) -> Path:
            return folder / coco.loadImgs(items[k][0])[0]["file_name"]

        def mask_of(k: int) -> np.ndarray:
            image_id, label = items[k]
            return object_mask(coco, image_id, cat_ids[label])

        return decode_split([label for _, label in items], self.params.image_size, image_of, mask_of,
                            mask_source=f"the height and width declared in {str(self.annotation_file)!r}")
