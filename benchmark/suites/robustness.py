"""Robust accuracy under attacks confined to regions (background, block, full image, ...)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..attacks.regions import make_region
from ..errors import ConfigError
from ..evaluate import EvalContext, Suite
from ..registry import ATTACKS, SUITES
from ..store import Measurement


@dataclass
class RobustnessParams:
    """The attack grid and its shared settings (the paper's PGD: 10 steps of 0.0156)."""

    grid: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: {"pgd": {"background": [1 / 255, 2 / 255, 3 / 255]}}
    )  # attack -> region -> eps values
    norm: Literal["linf", "l2"] = "linf"
    steps: int = 10
    step_size: float = 0.0156
    random_start: bool = True
    seeds: tuple[int, ...] = (0,)
    samples: int | None = 512  # a fixed seeded subset of the eval set; None = all of it
    eval_set: str = "test"
    block_fraction: float = 56 / 224

    def __post_init__(self) -> None:
        if self.steps < 0 or self.step_size <= 0:
            raise ConfigError("robustness.steps must be >= 0 and robustness.step_size > 0")
        if not self.seeds:
            raise ConfigError("robustness.seeds must list at least one attack seed")
        if any(e < 0 for regions in self.grid.values() for eps in regions.values() for e in eps):
            raise ConfigError("robustness.grid eps values must be >= 0")
        if self.samples is not None and self.samples < 1:
            raise ConfigError("robustness.samples must be >= 1 or none")


@SUITES.register("robustness")
class RobustnessSuite(Suite):
    """Robust accuracy per attack, region, eps and attack seed, with the attacked-area fraction."""

    Params = RobustnessParams

    def run(self, ctx: EvalContext) -> list[Measurement]:
        p: RobustnessParams = self.params
        model = ctx.model.eval()
        batches = list(ctx.batches(ctx.split(p.eval_set), limit=p.samples))
        n = sum(len(b) for b in batches)
        with torch.no_grad():
            clean = sum(int((model(b.x).argmax(1) == b.y).sum()) for b in batches) / n
        out = [Measurement("robustness", "clean_accuracy", clean, n, eval_set=p.eval_set)]
        regions = ctx.dataset.regions()
        for attack_name, grid in p.grid.items():
            attack_cls = ATTACKS.get(attack_name)
            for region_name, eps_values in grid.items():
                for eps in eps_values:
                    for seed in p.seeds:
                        out.append(self._measure(ctx, attack_cls, attack_name, region_name, eps, seed,
                                                 batches, regions, clean))
        return out

    def _measure(self, ctx, attack_cls, attack_name, region_name, eps, seed, batches, regions, clean) -> Measurement:
        p: RobustnessParams = self.params
        generator = torch.Generator().manual_seed(seed)
        attack = attack_cls(ctx.model, eps=eps, norm=p.norm, steps=p.steps, step_size=p.step_size,
                            random_start=p.random_start, num_classes=ctx.dataset.info.num_classes)
        correct, area, n = 0, 0.0, 0
        started = time.perf_counter()
        label = f"{attack_name} {region_name} eps={eps:.4g} seed={seed}"
        with ctx.reporter.task(f"  {label}", len(batches)) as update:
            for batch in batches:
                region = make_region(region_name, batch, generator, regions, p.block_fraction)
                x_adv = attack(batch.x, batch.y, region, generator)
                with torch.no_grad():
                    correct += int((ctx.model(x_adv).argmax(1) == batch.y).sum())
                area += float(region.flatten(1).mean(1).sum())
                n += len(batch)
                update(robust_acc=correct / n)
        value = correct / n
        flags = ("robust_above_clean",) if value > clean + 1e-12 else ()
        return Measurement(
            "robustness", "robust_accuracy", value, n, eval_set=p.eval_set, attack=attack_name,
            region=region_name, norm=p.norm, eps=eps, steps=p.steps, step_size=p.step_size,
            attack_seed=seed, area_fraction=area / n, flags=flags, duration_s=time.perf_counter() - started,
        )
