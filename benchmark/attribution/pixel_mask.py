"""PixelMask: a mask explainer found by optimisation, with Start Grad initialisation.

Find m in [0,1]^(H x W) minimising

    D(m) + lambda_1 * mean |m| + lambda_2 * TV(m),   x~ = m * x + (1 - m) * noise,

with D the mean over noise draws of (p_c(x~) - p_c(x))^2 and TV(m) the mean of squared vertical
and horizontal differences; Adam (lr 0.1) for `iterations` steps, m clamped to [0,1] after each
(Fong and Vedaldi 2017, in the form of Kolek et al. 2023). The noise is Gaussian with each image's
own per-channel mean and standard deviation. c is the target class.

Initialisations: all ones, uniform noise, or Start Grad (Uendes, Yu and Hoogendoorn, ICLR 2025):
|d logit_c / dx|, max over channels, mapped per image to U(0,1) by its quantile transform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.attribution import Explainer
from benchmark.attribution.scoring import average_ranks
from benchmark.errors import ConfigError
from benchmark.registry import EXPLAINERS

Init = Literal["ones", "uniform", "start_grad"]
INITS: tuple[Init, ...] = ("ones", "uniform", "start_grad")


def quantile_transform(values: Tensor) -> Tensor:
    """Per row: (average rank - 1) / (N - 1), a uniform spread over [0,1] that keeps the order."""
    n = values.shape[1]
    return ((average_ranks(values) - 1) / max(n - 1, 1)).to(values.dtype)


def start_grad(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """Start Grad's initial mask (B, 1, H, W): quantile-transformed input-gradient magnitude."""
    leaf = x.detach().requires_grad_(True)
    logit = model(leaf).gather(1, target.view(-1, 1)).sum()
    grad = torch.autograd.grad(logit, leaf)[0].abs().amax(dim=1)  # (B, H, W)
    return quantile_transform(grad.flatten(1)).view(x.shape[0], 1, *x.shape[-2:])


def initial_mask(kind: str, model: nn.Module, x: Tensor, target: Tensor, generator: torch.Generator) -> Tensor:
    shape = (x.shape[0], 1, *x.shape[-2:])
    if kind == "ones":
        return torch.ones(shape, dtype=x.dtype, device=x.device)
    if kind == "uniform":
        return torch.rand(shape, dtype=x.dtype, generator=generator).to(x.device)
    if kind == "start_grad":
        return start_grad(model, x, target)
    raise ValueError(f"unknown mask initialisation {kind!r}; expected one of {', '.join(INITS)}")


def total_variation(m: Tensor) -> Tensor:
    """Per sample: (sum of squared vertical + horizontal differences) / number of pixels."""
    dh = (m[..., 1:, :] - m[..., :-1, :]).pow(2).flatten(1).sum(1)
    dw = (m[..., :, 1:] - m[..., :, :-1]).pow(2).flatten(1).sum(1)
    return (dh + dw) / m[0].numel()


def optimise_masks(model: nn.Module, x: Tensor, target: Tensor, generator: torch.Generator,
                   p: "PixelMaskParams", record_at: Sequence[int] = ()) -> tuple[Tensor, dict[int, Tensor]]:
    """The optimised masks (B, 1, H, W) after `p.iterations` steps from `p.init`, and copies taken
    after each iteration count in `record_at`."""
    init, iterations, noise_draws, lambda_l1, lambda_tv = p.init, p.iterations, p.noise_draws, p.lambda_l1, p.lambda_tv
    x = x.detach()
    with torch.no_grad():
        p_clean = F.softmax(model(x), dim=1).gather(1, target.view(-1, 1))  # (B, 1)
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True)
    mask = initial_mask(init, model, x, target, generator).detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([mask], lr=p.lr)
    recorded = {0: mask.detach().clone()} if 0 in record_at else {}
    targets = target.repeat(noise_draws)
    for step in range(1, iterations + 1):
        noise = mean + std * torch.randn((noise_draws, *x.shape), dtype=x.dtype, generator=generator).to(x.device)
        mixed = (mask * x + (1 - mask) * noise).flatten(0, 1)  # (draws * B, C, H, W)
        prob = F.softmax(model(mixed), dim=1).gather(1, targets.view(-1, 1)).view(noise_draws, -1, 1)
        distortion = (prob - p_clean).pow(2).mean(0).squeeze(1)  # (B,)
        loss = distortion + lambda_l1 * mask.abs().flatten(1).mean(1) + lambda_tv * total_variation(mask)
        optimiser.zero_grad()
        loss.sum().backward()  # samples are independent: the sum gives each its own gradient
        optimiser.step()
        with torch.no_grad():
            mask.clamp_(0, 1)
        if step in record_at:
            recorded[step] = mask.detach().clone()
    return mask.detach(), recorded


@dataclass
class PixelMaskParams:
    init: Init = "start_grad"
    iterations: int = 300
    noise_draws: int = 16
    lambda_l1: float = 1.0
    lambda_tv: float = 2.0
    lr: float = 0.1

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.noise_draws < 1:
            raise ConfigError(f"pixel_mask needs iterations >= 0 and noise_draws >= 1, got {self.iterations} and "
                              f"{self.noise_draws}")
        if not (self.lambda_l1 >= 0 and self.lambda_tv >= 0 and self.lr > 0):
            raise ConfigError("pixel_mask needs lambda_l1 >= 0, lambda_tv >= 0 and lr > 0")


@EXPLAINERS.register("pixel_mask")
class PixelMask(Explainer):
    """PixelMask (Fong and Vedaldi 2017 / Kolek et al. 2023) with Start Grad, ones or uniform initialisation."""

    Params = PixelMaskParams
    mask = True

    def attribute(self, x, target, generator):
        mask, _ = optimise_masks(self.model, x, target, generator, self.params)
        return mask
