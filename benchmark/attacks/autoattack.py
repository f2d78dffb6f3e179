"""AutoAttack compositions (Croce & Hein 2020): run attacks in turn on the samples still robust,
keeping the worst case per sample. Random noise of the same budget, for the sanity check."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.attacks import Attack, AttackParams, uniform_like
from benchmark.attacks.apgd import APGDCE, APGDDLR, APGDTargeted
from benchmark.attacks.square import Square
from benchmark.errors import ConfigError
from benchmark.registry import ATTACKS


@dataclass
class CompositionParams(AttackParams):
    steps: int = 100  # of each APGD part
    queries: int = 5000  # of the Square part
    eot: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.queries < 1 or self.eot < 1:
            raise ConfigError(f"AutoAttack's queries and eot must be >= 1, got {self.queries} and {self.eot}")


@dataclass
class StandardParams(CompositionParams):
    target_classes: int = 9


@dataclass
class RandParams(CompositionParams):
    eot: int = 20


class Composition(Attack):
    """Worst case per sample over a list of attacks, each run only on samples not yet broken."""

    Params = CompositionParams
    params: CompositionParams
    norms = ("linf",)

    def __init__(self, model, **settings):
        super().__init__(model, **settings)
        p = self.params
        self.queries, self.eot = int(p.queries), int(p.eot)
        self.kwargs = dict(norm=p.norm, steps=p.steps, step_size=p.step_size, random_start=p.random_start)

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

    Params = StandardParams
    params: StandardParams

    def __init__(self, model, **settings):
        super().__init__(model, **settings)
        self.target_classes = int(self.params.target_classes)

    def attacks(self):
        common = dict(self.kwargs, eps=self.eps, num_classes=self.num_classes)
        out: list[Attack] = [APGDCE(self.model, **common)]
        if self.num_classes is None or self.num_classes >= APGDTargeted.min_classes:
            out.append(APGDTargeted(self.model, **common, target_classes=self.target_classes))
        out.append(Square(self.model, **dict(common, steps=self.queries)))
        return out


@ATTACKS.register("autoattack-rand")
class AutoAttackRand(Composition):
    """'rand': APGD-CE and APGD-DLR with expectation over `eot` gradient samples (20 in the original)."""

    Params = RandParams
    min_classes = 3

    def attacks(self):
        common = dict(self.kwargs, eps=self.eps, num_classes=self.num_classes, eot=self.eot)
        return [APGDCE(self.model, **common), APGDDLR(self.model, **common)]


@ATTACKS.register("noise")
class UniformSignNoise(Attack):
    """Random corners of the eps-box (+-eps per pixel) in the region: the baseline any attack must beat."""

    norms = ("linf",)
    iterative = False
    baseline = True

    def perturb(self, x: Tensor, y: Tensor, region: Tensor, generator: torch.Generator) -> Tensor:
        signs = torch.sign(uniform_like(x, generator, -1.0, 1.0))
        return torch.clamp(x + self.eps * signs * region, 0.0, 1.0)
