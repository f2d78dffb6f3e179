"""Attribution methods, one call shape: explainer(model, x, target, generator) -> (B, C|1, H, W).

Inputs are [0,1] images (normalisation lives inside the model), the model is in eval mode,
`target` holds one class per sample, and any randomness comes from `generator`. Registered in
EXPLAINERS; their maps are scored against object masks by the `attribution` suite.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


class Explainer(ABC):
    """Base of attribution methods; options are keyword arguments checked at construction."""

    name: ClassVar[str] = ""

    def __init__(self, **options: Any):
        unknown = set(options) - set(self.defaults())
        if unknown:
            raise ValueError(f"explainer {self.name!r} has no option {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(self.defaults()) or '(none)'}")
        self.options = {**self.defaults(), **options}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {}

    def __call__(self, model: nn.Module, x: Tensor, target: Tensor, generator: torch.Generator) -> Tensor:
        if model.training:
            raise ValueError("explainers need the model in eval mode (BatchNorm would mix the expanded batch)")
        with warnings.catch_warnings():  # Captum announces its temporary hooks on every call
            warnings.filterwarnings("ignore", message=r"(?s).*(hooks|did not already require gradients)")
            return self.attribute(model, x.detach().requires_grad_(True), target, generator).detach()

    @abstractmethod
    def attribute(self, model: nn.Module, x: Tensor, target: Tensor, generator: torch.Generator) -> Tensor:
        """Attributions shaped like x, or (B, 1, H, W) for maps without channels."""
