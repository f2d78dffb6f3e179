"""Projected gradient descent confined to a region (L-inf and L2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.attacks import Attack, normal_like, uniform_like
from benchmark.registry import ATTACKS


def input_gradient(model: torch.nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Gradient of the mean cross-entropy w.r.t. the input (no parameter gradients kept)."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    return torch.autograd.grad(loss, x)[0]


def _l2_norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


@ATTACKS.register("pgd")
class MaskedPGD(Attack):
    """Masked PGD (Madry et al. 2018): gradient-sign steps (L-inf) or normalised steps (L2) in the region."""

    norms = ("linf", "l2")

    def perturb(self, x: Tensor, y: Tensor, region: Tensor, generator: torch.Generator) -> Tensor:
        adv = x.clone()
        if self.random_start and self.eps > 0:
            if self.norm == "linf":
                start = uniform_like(x, generator, -self.eps, self.eps) * region
            else:  # a random direction inside the region, radius uniform in [0, eps]
                direction = normal_like(x, generator) * region
                radius = torch.rand(len(x), generator=generator, dtype=x.dtype).to(x.device).view(-1, 1, 1, 1)
                start = direction / _l2_norm(direction).clamp_min(1e-12) * radius * self.eps
            adv = torch.clamp(x + start, 0.0, 1.0)
        for _ in range(self.steps):
            grad = input_gradient(self.model, adv, y)
            if self.norm == "linf":
                # The same operation order as torchattacks' PGD, with the step masked.
                adv = adv + self.step_size * grad.sign() * region
                delta = torch.clamp(adv - x, -self.eps, self.eps)
            else:
                grad = grad * region
                adv = adv + self.step_size * grad / _l2_norm(grad).clamp_min(1e-12)
                delta = adv - x
                delta = delta * torch.clamp(self.eps / _l2_norm(delta).clamp_min(1e-12), max=1.0)
            adv = torch.clamp(x + delta, 0.0, 1.0)
        return adv
