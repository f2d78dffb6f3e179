"""Attack regions from object masks (1 = attackable): full, background, foreground, block.

A region is a function registered in REGIONS: region(batch, generator, block_fraction=...) ->
a (B,1,H,W) float mask drawn for every sample; any randomness (a block's placement) comes from
`generator`. A dataset may add regions of its own geometry (`regions()`, e.g. C-MNIST's right digit).
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor

from benchmark.data.split import Batch
from benchmark.errors import ConfigError
from benchmark.registry import REGIONS


@REGIONS.register("full")
def full(batch: Batch, generator: torch.Generator | None = None, block_fraction: float = 56 / 224) -> Tensor:
    """The whole image."""
    return torch.ones_like(batch.mask)


@REGIONS.register("background")
def background(batch: Batch, generator: torch.Generator | None = None, block_fraction: float = 56 / 224) -> Tensor:
    """Everything but the object (1 - mask): the paper's main threat."""
    return 1.0 - batch.mask


@REGIONS.register("foreground")
def foreground(batch: Batch, generator: torch.Generator | None = None, block_fraction: float = 56 / 224) -> Tensor:
    """The object only."""
    return batch.mask.clone()


def boxes(top: Tensor, left: Tensor, side_h: int, side_w: int, h: int, w: int) -> Tensor:
    """Boolean (B,1,h,w): one side_h x side_w box per sample with its corner at (top, left)."""
    rows = torch.arange(h, device=top.device).view(1, h, 1)
    cols = torch.arange(w, device=top.device).view(1, 1, w)
    top, left = top.view(-1, 1, 1), left.view(-1, 1, 1)
    inside = (rows >= top) & (rows < top + side_h) & (cols >= left) & (cols < left + side_w)
    return inside.unsqueeze(1)


@REGIONS.register("block")
def block(batch: Batch, generator: torch.Generator, block_fraction: float = 56 / 224) -> Tensor:
    """One square per sample (side = block_fraction of the image side), placed uniformly, within the background."""
    mask = batch.mask
    b, _, h, w = mask.shape
    side_h, side_w = max(1, round(block_fraction * h)), max(1, round(block_fraction * w))
    top = torch.randint(0, h - side_h + 1, (b,), generator=generator)
    left = torch.randint(0, w - side_w + 1, (b,), generator=generator)
    return boxes(top, left, side_h, side_w, h, w).to(mask) * (1.0 - mask)


def check_region(name: str, dataset_regions: Mapping[str, Callable[[Batch], Tensor]]) -> None:
    """Reject a region name neither registered nor defined by the dataset (before any work is done)."""
    if name not in dataset_regions and name not in REGIONS:
        known = [*REGIONS.names(), *dataset_regions]
        raise ConfigError(f"unknown attack region {name!r}; expected one of {', '.join(known)}")


def make_region(
    name: str,
    batch: Batch,
    generator: torch.Generator,
    dataset_regions: Mapping[str, Callable[[Batch], Tensor]] = {},
    block_fraction: float = 56 / 224,
) -> Tensor:
    """The region mask (B,1,H,W) named `name` for a batch: the dataset's own, else a registered one."""
    if name in dataset_regions:
        return dataset_regions[name](batch)
    check_region(name, dataset_regions)
    return REGIONS.get(name)(batch, generator, block_fraction=block_fraction)
