"""Training augmentations applied to image and object mask alike, batched and seeded."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.data.split import Batch


def affine_matrices(angle_deg: Tensor, shear_deg: Tensor, translate_px: Tensor) -> Tensor:
    """Forward 2x3 pixel-space maps: rotate(angle) @ shear_x(shear), then translate; (B,2,3)."""
    a = torch.deg2rad(angle_deg)
    s = torch.tan(torch.deg2rad(shear_deg))
    cos, sin = torch.cos(a), torch.sin(a)
    # rotation [[c,-s],[s,c]] times x-shear [[1,t],[0,1]]
    linear = torch.stack([torch.stack([cos, cos * s - sin], -1), torch.stack([sin, sin * s + cos], -1)], -2)
    return torch.cat([linear, translate_px.unsqueeze(-1)], dim=-1)


def warp(images: Tensor, forward: Tensor) -> Tensor:
    """Apply forward pixel-space affine maps about the image centre, nearest sampling, zero fill."""
    b, _, h, w = images.shape
    linear, shift = forward[:, :, :2], forward[:, :, 2]
    inverse = torch.linalg.inv(linear)
    # affine_grid works in normalised coordinates: pixel offset = p * (w/2, h/2)
    scale = torch.tensor([w / 2.0, h / 2.0], dtype=images.dtype, device=images.device)
    theta_linear = inverse * scale.view(1, 1, 2) / scale.view(1, 2, 1)
    theta_shift = -(inverse @ shift.unsqueeze(-1)).squeeze(-1) / scale
    theta = torch.cat([theta_linear, theta_shift.unsqueeze(-1)], dim=-1).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def random_affine(
    x: Tensor,
    mask: Tensor,
    generator: torch.Generator,
    *,
    degrees: float = 16.0,
    translate: float = 0.1,
    shear: float = 8.0,
) -> tuple[Tensor, Tensor]:
    """Per-sample random rotation, translation and x-shear (torchvision RandomAffine's ranges)."""
    b, _, h, w = x.shape

    def uniform(bound: float) -> Tensor:
        return (torch.rand(b, generator=generator, dtype=torch.float64) * 2 - 1) * bound

    angle, sh = uniform(degrees), uniform(shear)
    shift = torch.stack([torch.round(uniform(translate * w)), torch.round(uniform(translate * h))], dim=-1)
    forward = affine_matrices(angle, sh, shift).to(x.device)
    warped = warp(torch.cat([x, mask], dim=1), forward)
    return warped[:, : x.shape[1]], warped[:, x.shape[1] :]



def random_hflip(images: Tensor, masks: Tensor, generator: torch.Generator, p: float = 0.5) -> tuple[Tensor, Tensor]:
    """Mirror each sample left-right with probability p (image and mask alike). One gather per
    tensor, columns reversed in the chosen rows: a single pass over the batch."""
    chosen = torch.rand(len(images), generator=generator) < p
    width = images.shape[-1]
    columns = torch.arange(width)
    source = torch.where(chosen.view(-1, 1), width - 1 - columns, columns).to(images.device)  # (B, W)

    def mirrored(t: Tensor) -> Tensor:
        return torch.gather(t, -1, source.view(len(t), 1, 1, width).expand_as(t))

    return mirrored(images), mirrored(masks)


def flipped(batch: Batch, generator: torch.Generator) -> Batch:
    """The batch with `random_hflip` applied: the natural-image datasets' training augmentation."""
    x, mask = random_hflip(batch.x, batch.mask, generator)
    return Batch(x, batch.y, mask, batch.index)
