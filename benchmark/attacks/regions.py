"""Attack regions from object masks (1 = attackable): full, background, foreground, block."""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor

from ..data import Batch
from ..errors import ConfigError

GENERIC_REGIONS = ("full", "background", "foreground", "block")


def full(mask: Tensor) -> Tensor:
    return torch.ones_like(mask)


def background(mask: Tensor) -> Tensor:
    return 1.0 - mask


def foreground(mask: Tensor) -> Tensor:
    return mask.clone()


def boxes(top: Tensor, left: Tensor, side_h: int, side_w: int, h: int, w: int) -> Tensor:
    """Boolean (B,1,h,w): one side_h x side_w box per sample with its corner at (top, left)."""
    rows = torch.arange(h, device=top.device).view(1, h, 1)
    cols = torch.arange(w, device=top.device).view(1, 1, w)
    top, left = top.view(-1, 1, 1), left.view(-1, 1, 1)
    inside = (rows >= top) & (rows < top + side_h) & (cols >= left) & (cols < left + side_w)
    return inside.unsqueeze(1)


def block(mask: Tensor, generator: torch.Generator, side_fraction: float = 56 / 224) -> Tensor:
    """One square per sample (side = fraction of the image side), placed uniformly, within the background."""
    b, _, h, w = mask.shape
    side_h, side_w = max(1, round(side_fraction * h)), max(1, round(side_fraction * w))
    top = torch.randint(0, h - side_h + 1, (b,), generator=generator)
    left = torch.randint(0, w - side_w + 1, (b,), generator=generator)
    return boxes(top, left, side_h, side_w, h, w).to(mask) * (1.0 - mask)


def check_region(name: str, dataset_regions: Mapping[str, Callable[[Batch], Tensor]]) -> None:
    """Reject a region name neither generic nor defined by the dataset (before any work is done)."""
    if name not in dataset_regions and name not in GENERIC_REGIONS:
        known = [*GENERIC_REGIONS, *dataset_regions]
        raise ConfigError(f"unknown attack region {name!r}; expected one of {', '.join(known)}")


def make_region(
    name: str,
    batch: Batch,
    generator: torch.Generator,
    dataset_regions: Mapping[str, Callable[[Batch], Tensor]] = {},
    block_fraction: float = 56 / 224,
) -> Tensor:
    """The region mask (B,1,H,W) named `name` for a batch; datasets may add their own names."""
    if name in dataset_regions:
        return dataset_regions[name](batch)
    if name == "block":
        return block(batch.mask, generator, block_fraction)
    check_region(name, dataset_regions)
    return {"full": full, "background": background, "foreground": foreground}[name](batch.mask)
