"""Batches and splits: what the engine iterates over, in a fixed or seeded order.

Mask convention everywhere: 1 = salient object (protected), 0 = background (attackable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from torch import Tensor

from benchmark.errors import DataError


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

    def pin_memory(self) -> "Batch":
        """Page-locked copies (what DataLoader's pin_memory calls), for asynchronous copies to the GPU."""
        return Batch(*(t.pin_memory() for t in (self.x, self.y, self.mask, self.index)))


@dataclass
class StoredBatch:
    """A batch as splits store it: uint8 pixels (k stands for k/255) and uint8 masks. Cheap to
    make and a quarter of the bytes to send between processes; `decoded()` is the Batch."""

    x: Tensor
    y: Tensor
    mask: Tensor
    index: Tensor

    def decoded(self) -> Batch:
        return Batch(self.x.float().div_(255.0), self.y, self.mask.float(), self.index)

    def to(self, device: torch.device | str) -> "StoredBatch":
        """On `device` as stored: decoding there after the copy moves a quarter of the bytes and
        leaves the float work to the accelerator (k / 255 rounds the same on every IEEE device)."""
        return StoredBatch(*(t.to(device, non_blocking=True) for t in (self.x, self.y, self.mask, self.index)))

    def pin_memory(self) -> "StoredBatch":
        return StoredBatch(*(t.pin_memory() for t in (self.x, self.y, self.mask, self.index)))


class Split(Protocol):
    """What the engine needs of a split: its length and batches by index. A split may also offer
    `stored(index) -> StoredBatch` (with `batch(index) == stored(index).decoded()`): the
    loader's workers then send the uint8 batch and the training process converts it."""

    def __len__(self) -> int: ...

    def batch(self, index: Tensor) -> Batch: ...


class TensorSplit:
    """A split held in memory: uint8 images (N,C,H,W), int64 labels, uint8 masks (N,1,H,W)."""

    def __init__(self, images: Tensor, labels: Tensor, masks: Tensor):
        if images.dtype != torch.uint8 or masks.dtype not in (torch.uint8, torch.bool):
            raise DataError("a TensorSplit holds uint8 images and uint8 or bool masks")
        if images.ndim != 4 or masks.ndim != 4 or masks.shape[1] != 1:
            raise DataError(f"expected images (N,C,H,W) and masks (N,1,H,W), got {tuple(images.shape)} and "
                            f"{tuple(masks.shape)}")
        if not (len(images) == len(labels) == len(masks)) or images.shape[-2:] != masks.shape[-2:]:
            raise DataError("images, labels and masks of a split must have matching lengths and sizes")
        self.images, self.labels, self.masks = images, labels.long(), masks.to(torch.uint8)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int, Tensor]:
        return self.images[i].float() / 255.0, int(self.labels[i]), self.masks[i].float()

    def stored(self, index: Tensor) -> StoredBatch:
        return StoredBatch(self.images[index], self.labels[index], self.masks[index], index)

    def batch(self, index: Tensor) -> Batch:
        return self.stored(index).decoded()


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


def shuffled(order: Tensor, generator: torch.Generator | None) -> Tensor:
    """`order` permuted by one draw from `generator` (an epoch's sample order)."""
    return order[torch.randperm(len(order), generator=generator)]


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


@dataclass
class EvalSet:
    """A named set scored for clean accuracy: a split and its label protocol."""

    name: str
    split: Split
    predict: Callable[[Tensor], Tensor] = field(default=lambda logits: logits.argmax(dim=1))


@dataclass(frozen=True)
class Groups:
    """A group id per sample of a split (by the sample's index in it) and the groups' names, e.g.
    (label, background) pairs in the spurious-correlation literature (Sagawa et al. 2020)."""

    ids: Tensor  # int64, one per sample of the split
    names: tuple[str, ...]
    defined_by: str = ""  # one sentence: what a group is
    split: Any = None  # the samples, where they are not one of the dataset's splits (e.g. an evaluation source's)
