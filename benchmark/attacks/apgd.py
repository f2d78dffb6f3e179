"""Auto-PGD (Croce & Hein, ICML 2020) confined to a region: APGD-CE, APGD-DLR and targeted APGD.

Step size starts at 2 eps and is halved at checkpoints where progress stalled; a momentum of 0.75
mixes the last two iterates. A sample counts as broken as soon as any iterate misclassifies it
(the returned image is that iterate), otherwise the highest-loss iterate is returned. Gradients
and starting noise are multiplied by the region, so pixels outside it never move.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.attacks import Attack, AttackParams, uniform_like
from benchmark.errors import ConfigError
from benchmark.registry import ATTACKS


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Difference of logits ratio, per sample: -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)."""
    top = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf")).max(1).values
    return -(z_y - others) / (top[:, 0] - top[:, 2] + 1e-12)


def targeted_dlr_loss(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR, per sample: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    top = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def checkpoints(steps: int) -> list[int]:
    """Iterations at which APGD may halve its step: ceil(p_j * steps), p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(round(q * steps, 9)) for q in p if q <= 1})


# Input elements per forward pass when EOT draws are stacked, per device type: on a GPU 4,096
# C-MNIST images (64x64), and fewer than one batch of 224 px images, which then take their draws
# one pass at a time; on a CPU one draw per pass (stacking measured 1.09x slower there: a bigger
# batch, and no kernel launches to save; docs/PERFORMANCE.md).
EOT_ELEMENTS = {"cpu": 0, "accelerator": 2**24}

@dataclass
class APGDParams(AttackParams):
    steps: int = 100
    eot: int = 1  # gradient samples averaged per step (expectation over transformation)
    restarts: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eot < 1 or self.restarts < 1:
            raise ConfigError(f"APGD's eot and restarts must be >= 1, got {self.eot} and {self.restarts}")


@dataclass
class APGDTargetedParams(APGDParams):
    target_classes: int = 9  # the next most likely classes attacked in turn (AutoAttack: 9)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target_classes < 1:
            raise ConfigError(f"apgd-t's target_classes must be >= 1, got {self.target_classes}")


class APGD(Attack):
    """APGD with a per-sample loss; subclasses choose the loss (and targets)."""

    Params = APGDParams
    params: APGDParams
    norms = ("linf",)
    momentum = 0.75
    rho = 0.75

    def __init__(self, model, **settings):
        super().__init__(model, **settings)
        self.eot, self.restarts = int(self.params.eot), int(self.params.restarts)

    @abstractmethod
    def loss(self, logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """Per-sample loss that the attack increases."""

    def targets(self, x: Tensor, y: Tensor) -> list[Tensor | None]:
        return [None]

    def perturb(self, x: Tensor, y: Tensor, region: Tensor, generator: torch.Generator) -> Tensor:
        adv = x.clone()
        broken = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for target in self.targets(x, y):
            for _ in range(self.restarts):
                todo = ~broken
                if not todo.any():
                    return adv
                t = target[todo] if target is not None else None
                found, success = self._run(x[todo], y[todo], region[todo], t, generator)
                adv[todo] = found
                broken[todo] = success
        return adv

    def _grad(self, x: Tensor, y: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Per-sample loss, logits and the input gradient averaged over `eot` evaluations, the
        draws stacked into one forward pass as far as EOT_ELEMENTS allows (on a GPU one pass of 20
        draws instead of 20 passes on C-MNIST; with eot = 1 exactly the single evaluation)."""
        budget = EOT_ELEMENTS.get(x.device.type, EOT_ELEMENTS["accelerator"])
        per_pass = max(1, min(self.eot, budget // max(1, x.numel())))
        grad, done = torch.zeros_like(x), 0
        while done < self.eot:
            n = min(per_pass, self.eot - done)
            x_ = x.detach().repeat(n, *([1] * (x.ndim - 1))).requires_grad_(True)
            logits = self.model(x_)
            loss = self.loss(logits, y.repeat(n), None if target is None else target.repeat(n))
            grad += torch.autograd.grad(loss.sum(), x_)[0].view(n, *x.shape).sum(0)
            done += n
        last = slice(len(logits) - len(x), None)  # the last draw's, as the one-draw-at-a-time loop returned
        return loss[last].detach(), logits[last].detach(), grad / self.eot

    def _run(self, x, y, region, target, generator) -> tuple[Tensor, Tensor]:
        eps = self.eps
        shape = (-1, *([1] * (x.ndim - 1)))
        project = lambda z: torch.clamp(torch.min(torch.max(z, x - eps), x + eps), 0.0, 1.0)  # noqa: E731
        noise = uniform_like(x, generator, -1.0, 1.0) * region
        scale = noise.flatten(1).abs().max(1).values.clamp_min(1e-12).view(shape)
        current = project(x + eps * noise / scale) if self.random_start else x.clone()
        step = torch.full((len(x),), 2.0 * eps, device=x.device).view(shape)
        loss, logits, grad = self._grad(current, y, target)
        best_adv, success = current.clone(), logits.argmax(1) != y
        best_loss, best_x, best_grad = loss.clone(), current.clone(), grad.clone()
        previous_loss = loss
        previous = current.clone()
        marks = checkpoints(self.steps)
        last_mark, increases = 0, torch.zeros(len(x), device=x.device)
        loss_at_last_mark, step_reduced_at_last_mark = best_loss.clone(), torch.ones(len(x), dtype=torch.bool,
                                                                                     device=x.device)
        for k in range(self.steps):
            with torch.no_grad():
                z = project(current + step * torch.sign(grad) * region)
                if k > 0:
                    z = project(current + self.momentum * (z - current) + (1 - self.momentum) * (current - previous))
                previous, current = current, z
            loss, logits, grad = self._grad(current, y, target)
            with torch.no_grad():
                newly = (logits.argmax(1) != y) & ~success
                best_adv[newly] = current[newly]
                success |= newly
                increases += (loss > previous_loss).float()
                previous_loss = loss
                improved = loss > best_loss
                best_loss = torch.where(improved, loss, best_loss)
                best_x[improved], best_grad[improved] = current[improved], grad[improved]
                if k + 1 in marks and k + 1 > last_mark:
                    window = k + 1 - last_mark
                    stalled = increases <= self.rho * window  # too few steps raised the loss
                    flat = ~step_reduced_at_last_mark & (loss_at_last_mark >= best_loss)
                    reduce = stalled | flat
                    step_reduced_at_last_mark = reduce
                    loss_at_last_mark = best_loss.clone()
                    step[reduce] /= 2.0
                    current[reduce], grad[reduce] = best_x[reduce], best_grad[reduce]
                    previous[reduce] = current[reduce]
                    increases.zero_()
                    last_mark = k + 1
        return torch.where(success.view(shape), best_adv, best_x), success


@ATTACKS.register("apgd-ce")
class APGDCE(APGD):
    """APGD on the cross-entropy."""

    def loss(self, logits, y, target):
        return F.cross_entropy(logits, y, reduction="none")


@ATTACKS.register("apgd-dlr")
class APGDDLR(APGD):
    """APGD on the difference-of-logits-ratio loss (needs at least 3 classes)."""

    min_classes = 3

    def loss(self, logits, y, target):
        return dlr_loss(logits, y)


@ATTACKS.register("apgd-t")
class APGDTargeted(APGD):
    """Targeted APGD on the targeted DLR loss, once per target: the next `target_classes` most
    likely classes (9 in AutoAttack, capped at classes - 1; needs at least 4 classes)."""

    Params = APGDTargetedParams
    params: APGDTargetedParams
    min_classes = 4

    def __init__(self, model, **settings):
        super().__init__(model, **settings)
        if self.num_classes is not None and self.num_classes < self.min_classes:
            raise ValueError(f"apgd-t needs at least {self.min_classes} classes, the dataset has {self.num_classes}")
        self.target_classes = int(self.params.target_classes)

    def targets(self, x, y):
        with torch.no_grad():
            order = self.model(x).sort(dim=1, descending=True).indices
        n = min(self.target_classes, order.shape[1] - 1)
        return [order[:, i] for i in range(1, n + 1)]

    def loss(self, logits, y, target):
        return targeted_dlr_loss(logits, y, target)
