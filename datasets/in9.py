"""ImageNet-9, the Backgrounds Challenge (Xiao et al., ICLR 2021): nine coarse classes, eight
variants of the same images with more or less background signal, foreground masks for `original`.

An evaluation source (EVAL_SETS `in9`): any model with ImageNet-synset classes is scored on every
variant (eval sets `in9_<variant>`), and its `original` variant with `fg_mask` masks is the split
the masked attacks and attributions use. Layout under the data root:
    bg_challenge/<variant>/val/<NN_class name>/<image>        variants: original, only_fg, ...
    bg_challenge/fg_mask/val/<NN_class name>/<stem>.npy       foreground masks of `original`
    bg_challenge/in_to_in9.json                               ImageNet index -> IN-9 class or -1
Label protocols (`labels`): `synset` (the H-SPLID paper: top-1 among the model's classes against
the fine-grained synset in the file name), `in9` (the Backgrounds Challenge: top-1 mapped to
the 9 classes through in_to_in9.json, unmapped classes counted wrong) and `both` (each variant
twice: `in9_<variant>` by synset and `in9_<variant>_9way` mapped, with both BG-gaps). The JSON is keyed by
ImageNet-1k index; it is mapped through the synset (IMAGENET_WNIDS), never by class position.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

from benchmark.data.images import FileSplit, check_mask_size, image_size
from benchmark.data.split import EvalSet
from benchmark.dataset import EvalSource
from benchmark.errors import DataError
from benchmark.registry import EVAL_SETS
from benchmark_datasets.imagenet import BG_REPOSITORY, VARIANTS, imagenet_index, images_in

IN9_CLASSES = ("dog", "bird", "wheeled vehicle", "reptile", "carnivore", "insect", "musical instrument",
               "primate", "fish")
SYNSET = re.compile(r"^(?:fg_)?(n\d{8})")


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
        raise DataError(f"IN-9 file {str(path)!r}: expected a name starting with the synset, <wnid>_... or "
                        "fg_<wnid>_...")
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


@dataclass
class IN9Params:
    labels: Literal["synset", "in9", "both"] = "synset"
    backgrounds: str = "bg_challenge"
    variants: tuple[str, ...] = VARIANTS


@EVAL_SETS.register("in9")
class ImageNet9(EvalSource):
    """ImageNet-9: the eight background variants (BG-gap = mixed_same - mixed_rand), original with masks."""

    Params = IN9Params

    @property
    def folder(self) -> Path:
        return self.root / self.params.backgrounds

    def _variant(self, variant: str) -> tuple[list[Path], list[int], list[int]]:
        """Files of one variant with the model's class index of their synset and their 9-way class."""
        index = {w: i for i, w in enumerate(self.wnids)}
        paths, synsets, classes = [], [], []
        for k, folder in enumerate(in9_class_dirs(self.folder / variant / "val")):
            for path in images_in(folder):
                wnid = synset_of(path)
                if wnid not in index and self.params.labels == "synset":
                    raise DataError(f"IN-9 file {str(path)!r}: synset {wnid} is not among the model's {len(index)} "
                                    "classes, so the synset protocol cannot score it (use dataset.labels=in9, or "
                                    "an ImageNet folder with that class)")
                paths.append(path)
                synsets.append(index.get(wnid, -1))
                classes.append(k)
        return paths, synsets, classes

    def masked_split(self) -> FileSplit:
        paths, synsets, _ = self._variant("original")
        masks = self.folder / "fg_mask" / "val"
        return FileSplit(paths, synsets, self.image_size,
                         mask_of=lambda k: fg_mask(masks / paths[k].parent.name / f"{paths[k].stem}.npy"))

    def eval_sets(self) -> list[EvalSet]:
        p: IN9Params = self.params
        mapped = p.labels in ("in9", "both")
        if mapped:
            predict = mapped_prediction(in9_mapping(self.folder / "in_to_in9.json", self.wnids))
        sets = []
        for variant in p.variants:
            paths, synsets, classes = self._variant(variant)
            if p.labels != "in9":
                sets.append(EvalSet(f"in9_{variant}", FileSplit(paths, synsets, self.image_size)))
            if mapped:
                name = f"in9_{variant}_9way" if p.labels == "both" else f"in9_{variant}"
                sets.append(EvalSet(name, FileSplit(paths, classes, self.image_size), predict))
        return sets

    def check(self) -> None:
        """Every variant's folders and synsets, in_to_in9.json for the 9-way protocol, and the header
        of every foreground mask (present, a readable .npy, 2-D, its image's size)."""
        self.eval_sets()
        masks = self.folder / "fg_mask" / "val"
        for path in self.masked_split().paths:
            check_fg_mask(masks / path.parent.name / f"{path.stem}.npy", path)

    def derived(self, accuracy: dict[str, float]) -> dict[str, float]:
        """BG-gap = acc(mixed_same) - acc(mixed_rand), per label protocol."""
        out = {}
        for suffix, metric in (("", "bg_gap"), ("_9way", "bg_gap_9way")):
            same, rand = f"in9_mixed_same{suffix}", f"in9_mixed_rand{suffix}"
            if {same, rand} <= set(accuracy):
                out[metric] = accuracy[same] - accuracy[rand]
        return out

    # -- the Backgrounds Challenge --------------------------------------------------------------
    def challenge_parts(self) -> tuple[FileSplit, list[int], FileSplit]:
        """The foregrounds (`original` with their masks), their 9-way classes, and the background
        pool (`only_bg_t`, every class), as the challenge's evaluation script reads them."""
        foregrounds = self.masked_split()
        _, _, classes = self._variant("original")
        paths, synsets, _ = self._variant("only_bg_t")
        return foregrounds, classes, FileSplit(paths, synsets, self.image_size)

    def challenge_predictions(self) -> dict[str, Callable[[torch.Tensor], torch.Tensor] | None]:
        """Per label protocol of `labels`, how a prediction is read: the 9-way protocol maps the
        top-1 ImageNet class through in_to_in9.json; the synset protocol keeps the class (None)."""
        p: IN9Params = self.params
        out: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {}
        if p.labels in ("synset", "both"):
            out["synset"] = None
        if p.labels in ("in9", "both"):
            out["in9"] = mapped_prediction(in9_mapping(self.folder / "in_to_in9.json", self.wnids))
        return out
