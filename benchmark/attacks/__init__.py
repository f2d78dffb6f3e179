"""Attacks on [0,1] images confined to a region, one call shape: attack(x, y, region, generator).

`region` is a float {0,1} tensor broadcastable to x (1 = the attack may change this pixel).
Every attack leaves pixels outside the region bit-identical to the input and draws its
randomness only from the explicit `generator`, never from the global RNG.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from benchmark.config.values import build_section
from benchmark.errors import ConfigError


@dataclass
class AttackParams:
    """Settings every attack takes (the robustness suite passes its shared ones); an attack extends
    them with its own fields, and `robustness.options` sets those per attack."""

    eps: float = 0.0
    norm: str = "linf"
    steps: int = 10
    step_size: float | None = None  # None: 2.5 * eps / steps
    random_start: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.eps < float("inf") or self.steps < 0:
            raise ConfigError(f"an attack needs a finite eps >= 0 and steps >= 0, got eps {self.eps}, "
                              f"steps {self.steps}")
        if self.step_size is not None and not 0 < self.step_size < float("inf"):
            raise ConfigError(f"an attack's step_size must be > 0, got {self.step_size}")


class Attack(ABC):
    """Base of region-confined attacks: `Attack(model, **settings)` checks the settings against the
    declared `Params`, then `attack(x, y, region, generator)`; subclasses implement `perturb`.

    Capabilities are class attributes: `norms` it supports, `iterative` (steps and step size mean
    something), `min_classes` (datasets with fewer are refused before training), `baseline` (a
    random reference the others must beat, never ranked)."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[AttackParams]] = AttackParams
    norms: ClassVar[tuple[str, ...]] = ("linf",)
    iterative: ClassVar[bool] = True
    min_classes: ClassVar[int] = 2
    baseline: ClassVar[bool] = False

    def __init__(self, model: nn.Module, *, num_classes: int | None = None, **settings: Any):
        self.params = settings_of(type(self), settings)
        self.model, self.num_classes = model, num_classes
        p = self.params
        self.eps, self.norm, self.steps, self.random_start = float(p.eps), p.norm, int(p.steps), p.random_start
        self.step_size = float(p.step_size) if p.step_size is not None else 2.5 * self.eps / max(self.steps, 1)

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


def settings_of(cls: type[Attack], settings: dict[str, Any], section: str = "") -> AttackParams:
    """An attack's settings checked against its Params (and its norms) without building it; a
    problem is one ConfigError naming `section` (or the attack)."""
    params = build_section(cls.Params, settings, section or f"attack {cls.name}")
    if params.norm not in cls.norms:
        raise ConfigError(f"attack {cls.name!r} supports norms {', '.join(cls.norms)}, not {params.norm!r}")
    return params
