"""Common corruptions (after Hendrycks & Dietterich's ImageNet-C), in torch on [0,1] batches.

A corruption is a function registered in CORRUPTIONS: corruption(x, severity, generator) -> the
corrupted batch (severity 1 to 5, randomness only from `generator`). Built-ins use ImageNet-C's
parameters; lengths in pixels (blur radius, snow streaks) are given for 224-pixel images and
scaled to the image side. `corrupt` blends the result in only where the region allows (the
background), so the object stays untouched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.registry import CORRUPTIONS

BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
DEFOCUS = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))  # disk radius, anti-alias sigma
# snow: noise mean, std, zoom, threshold, streak radius, streak sigma, image weight
SNOW = ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55))


def _check(severity: int) -> int:
    if severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"corruption severity must be 1 to 5, got {severity}")
    return severity - 1


def _scale(x: Tensor) -> float:
    return min(x.shape[-2:]) / 224


@CORRUPTIONS.register("brightness")
def brightness(x: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Add c to the HSV value channel, keeping hue and saturation: RGB scales by clip(V + c) / V."""
    c = BRIGHTNESS[_check(severity)]
    v = x.amax(1, keepdim=True)
    scaled = x * (torch.clamp(v + c, 0, 1) / v.clamp_min(1e-12))
    return torch.where(v > 0, scaled, torch.full_like(x, c)).clamp(0, 1)


def disk_kernel(radius: float, sigma: float) -> Tensor:
    """A normalised disk of `radius` pixels, softened by a Gaussian of `sigma` (ImageNet-C's aliasing)."""
    size = max(3, 2 * math.ceil(radius) + 1)
    r = torch.arange(size, dtype=torch.float32) - size // 2
    disk = ((r.view(-1, 1) ** 2 + r.view(1, -1) ** 2) <= radius**2).float()
    disk /= disk.sum()
    if sigma > 0:
        g = torch.exp(-(r**2) / (2 * sigma**2))
        g = g / g.sum()
        disk = F.conv2d(disk[None, None], (g.view(-1, 1) * g.view(1, -1))[None, None], padding=size // 2)[0, 0]
    return disk / disk.sum()


def _blur(x: Tensor, kernel: Tensor) -> Tensor:
    c = x.shape[1]
    k = kernel.to(x)[None, None].expand(c, 1, *kernel.shape)
    pad = kernel.shape[-1] // 2
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="replicate"), k, groups=c)


@CORRUPTIONS.register("defocus_blur")
def defocus_blur(x: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    radius, sigma = DEFOCUS[_check(severity)]
    s = _scale(x)
    return _blur(x, disk_kernel(max(1.0, radius * s), sigma * s)).clamp(0, 1)


def line_kernel(radius: float, sigma: float, angle: float) -> Tensor:
    """Motion blur along `angle` (degrees): Gaussian weights of width sigma on a one-sided line."""
    size = max(3, 2 * math.ceil(radius) + 1)
    kernel = torch.zeros(size, size)
    centre = size // 2
    for t in range(math.ceil(radius) + 1):
        w = math.exp(-(t**2) / (2 * max(sigma, 1e-6) ** 2))
        row = centre - round(t * math.sin(math.radians(angle)))
        col = centre + round(t * math.cos(math.radians(angle)))
        if 0 <= row < size and 0 <= col < size:
            kernel[row, col] += w
    return kernel / kernel.sum()


@CORRUPTIONS.register("snow")
def snow(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Flakes from thresholded, zoomed Gaussian noise streaked by motion blur; the image greyed
    and brightened under them (ImageNet-C's recipe, the streak angle drawn per batch)."""
    loc, std, zoom, threshold, radius, sigma, weight = SNOW[_check(severity)]
    b, c, h, w = x.shape
    small = (max(1, round(h / zoom)), max(1, round(w / zoom)))
    noise = (torch.randn(b, 1, *small, generator=generator) * std + loc).to(x)
    flakes = F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)
    flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes)
    angle = float(torch.empty(1).uniform_(-135, -45, generator=generator))
    s = _scale(x)
    flakes = _blur(flakes, line_kernel(max(1.0, radius * s), max(0.5, sigma * s), angle)).clamp(0, 1)
    grey = x.mean(1, keepdim=True) if c > 1 else x
    base = weight * x + (1 - weight) * torch.maximum(x, grey * 1.5 + 0.5)
    return (base + flakes + flakes.flip(-1).flip(-2)).clamp(0, 1)


def corrupt(x: Tensor, name: str, severity: int, region: Tensor, generator: torch.Generator) -> Tensor:
    """The corrupted batch where region = 1, the original pixels elsewhere (bit-identical)."""
    corrupted = CORRUPTIONS.get(name)(x, severity, generator)
    return torch.where(region.bool().expand_as(x), corrupted, x)
