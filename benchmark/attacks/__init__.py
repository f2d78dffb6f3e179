"""Attacks on [0,1] images confined to a region, one call shape: attack(x, y, region, generator).

`region` is a float {0,1} tensor broadcastable to x (1 = the attack may change this pixel).
Every attack leaves pixels outside the region bit-identical to the input and draws its
randomness only from the explicit `generator`, never from the global RNG.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn


class Attack(ABC):
    """Base of region-confined attacks; subclasses implement `perturb`."""

    name: ClassVar[str] = ""
    norms: ClassVar[tuple[str, ...]] = ("linf",)
    iterative: ClassVar[bool] = True  # False: steps and step size mean nothing (e.g. random noise)
    min_classes: ClassVar[int] = 2  # datasets with fewer classes are refused before training

    def __init__(self, model: nn.Module, *, eps: float, norm: str = "linf", steps: int = 10,
                 step_size: float | None = None, random_start: bool = True, num_classes: int | None = None):
        if norm not in self.norms:
            raise ValueError(f"attack {self.name!r} supports norms {', '.join(self.norms)}, not {norm!r}")
        if eps < 0 or steps < 0:
            raise ValueError("eps and steps must be >= 0")
        self.model, self.eps, self.norm, self.steps = model, float(eps), norm, int(steps)
        self.step_size = float(step_size) if step_size is not None else 2.5 * float(eps) / max(steps, 1)
        self.random_start, self.num_classes = random_start, num_classes

    def __call__(self, x: Tensor, y: Tensor, region: Tensor, generator: torch.Generator) -> Tensor:
        region = region.to(dtype=x.dtype).expand_as(x)
        adv = self.perturb(x, y, region, generator)
        return torch.where(region.bool(), adv, x).detach()

    @abstractmethod
    def perturb(self, x: Tensor, y: Tensor, region: Tensor, generator: torch.Generator) -> Tensor:
        """The adversarial images; pixels outside the region are restored by __call__."""


def uniform_like(x: Tensor, generator: torch.Generator, low: float, high: float) -> Tensor:
    """U(low, high) noise drawn on the CPU generator (same values on every device), moved to x."""
    noise = torch.empty(x.shape, dtype=x.dtype).uniform_(low, high, generator=generator)
    return noise.to(x.device)


def normal_like(x: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(x.shape, dtype=x.dtype, generator=generator).to(x.device)
