"""AutoAttack compositions (Croce & Hein 2020): run attacks in turn on the samples still robust,
keeping the worst case per sample. Random noise of the same budget, for the sanity check."""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from ..registry import ATTACKS
from . import Attack, uniform_like
from .apgd import APGDCE, APGDDLR, APGDTargeted
from .square import Square


class Composition(Attack):
    """Worst case per sample over a list of attacks, each run only on samples not yet broken."""

    norms = ("linf",)

    def __init__(self, model, *, eps, steps: int = 100, queries: int = 5000, eot: int = 1, **kwargs):
        super().__init__(model, eps=eps, steps=steps, **kwargs)
        self.queries, self.eot = int(queries), int(eot)
        self.kwargs = dict(kwargs, steps=steps)

    @abstractmethod
    def attacks(self) -> list[Attack]:
        """The attacks to run, in order."""

    def perturb(self, x: Tensor, y: Tensor, region: Tensor, generator: torch.Generator) -> Tensor:
        adv = x.clone()
        with torch.no_grad():
            robust = self.model(x).argmax(1) == y
        for attack in self.attacks():
            idx = robust.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            found = attack(x[idx], y[idx], region[idx], generator)
            with torch.no_grad():
                fooled = self.model(found).argmax(1) != y[idx]
            adv[idx[fooled]] = found[fooled]
            robust[idx[fooled]] = False
        return adv


@ATTACKS.register("autoattack")
class AutoAttackStandard(Composition):
    """'standard': APGD-CE, APGD-T (`target_classes` targets, 9 as in the original), Square
    (`queries`). FAB-T is not included (docs/ATTACKS.md); the original uses 100 steps and 5,000
    Square queries."""

    def __init__(self, model, *, eps, target_classes: int = 9, **kwargs):
        super().__init__(model, eps=eps, **kwargs)
        self.target_classes = int(target_classes)

    def attacks(self):
        common = dict(self.kwargs, eps=self.eps, num_classes=self.num_classes)
        out = [APGDCE(self.model, **common)]
        if self.num_classes is None or self.num_classes >= 4:
            out.append(APGDTargeted(self.model, **common, target_classes=self.target_classes))
        out.append(Square(self.model, **dict(common, steps=self.queries)))
        return out


@ATTACKS.register("autoattack-rand")
class AutoAttackRand(Composition):
    """'rand': APGD-CE and APGD-DLR with expectation over `eot` gradient samples (20 in the original)."""

    min_classes = 3

    def __init__(self, model, *, eps, eot: int = 20, **kwargs):
        super().__init__(model, eps=eps, eot=eot, **kwargs)

    def attacks(self):
        common = dict(self.kwargs, eps=self.eps, num_classes=self.num_classes, eot=self.eot)
        return [APGDCE(self.model, **common), APGDDLR(self.model, **common)]


@ATTACKS.register("noise")
class UniformSignNoise(Attack):
    """Random corners of the eps-box (+-eps per pixel) in the region: the baseline any attack must beat."""

    norms = ("linf",)
    iterative = False

    def perturb(self, x: Tensor, y: Tensor, region: Tensor, generator: torch.Generator) -> Tensor:
        signs = torch.sign(uniform_like(x, generator, -1.0, 1.0))
        return torch.clamp(x + self.eps * signs * region, 0.0, 1.0)
