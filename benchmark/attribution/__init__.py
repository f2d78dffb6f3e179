"""Attribution methods, one call shape: Explainer(model, **options) then explainer(x, target, generator).

Inputs are [0,1] images (normalisation lives inside the model), the model is in eval mode,
`target` holds one class per sample, any randomness comes from `generator`, and the result is
shaped like x, or (B, 1, H, W) for maps without channels. Options are checked against the
explainer's declared `Params` (also when the configuration is resolved, without building it).
Registered in EXPLAINERS; their maps are scored against object masks by the `attribution` suite.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from benchmark.config.values import build_section


@dataclass
class NoOptions:
    """An explainer without settings."""


class Explainer(ABC):
    """Base of attribution methods, bound to one model as attacks are.

    Capabilities are class attributes: `default` (in the suite's default set), `mask` (returns a
    mask m in [0,1] of the image, so retained probability and CP-Pixel apply)."""

    name: ClassVar[str] = ""
    Params: ClassVar[type] = NoOptions
    default: ClassVar[bool] = True
    mask: ClassVar[bool] = False

    def __init__(self, model: nn.Module, **options: Any):
        self.model = model
        self.params = options_of(type(self), options)

    def __call__(self, x: Tensor, target: Tensor, generator: torch.Generator) -> Tensor:
        if self.model.training:
            raise ValueError("explainers need the model in eval mode (BatchNorm would mix the expanded batch)")
        with warnings.catch_warnings():  # Captum announces its temporary hooks on every call
            warnings.filterwarnings("ignore", message=r"(?s).*(hooks|did not already require gradients)")
            return self.attribute(x.detach().requires_grad_(True), target, generator).detach()

    @abstractmethod
    def attribute(self, x: Tensor, target: Tensor, generator: torch.Generator) -> Tensor:
        """Attributions of `self.model` shaped like x, or (B, 1, H, W) for maps without channels."""


def options_of(cls: type[Explainer], options: dict[str, Any], section: str = "") -> Any:
    """An explainer's options checked against its Params without building it (one ConfigError)."""
    return build_section(cls.Params, options, section or f"explainer {cls.name}")
