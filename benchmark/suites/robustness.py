"""Robust accuracy under attacks confined to regions (background, block, full image, ...).

Every (attack, region, eps, attack seed) is one row with its settings and the attacked-area
fraction. Regions are drawn once per (region, seed) from their own generator, so every attack
and the noise baseline of a seed see the same blocks. Sanity flags (RobustBench style) are
written into the rows: see `sanity_flags`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..attacks.regions import check_region, make_region
from ..config import check_buildable
from ..errors import ConfigError
from ..evaluate import EvalContext, Suite, check_split
from ..registry import ATTACKS, SUITES
from ..store import Measurement

VANISHING_FRACTION = 0.1  # flag when more than this share of samples has an all-zero region gradient


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
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per attack, e.g. {"square": {"steps": 1000}}
    sanity: bool = True  # random-noise baseline rows and the input-gradient check

    def __post_init__(self) -> None:
        if self.steps < 1 or self.step_size <= 0:
            raise ConfigError(f"robustness.steps must be >= 1 and robustness.step_size > 0, got {self.steps} and "
                              f"{self.step_size}")
        if not self.seeds:
            raise ConfigError("robustness.seeds must list at least one attack seed")
        if any(e < 0 for regions in self.grid.values() for eps in regions.values() for e in eps):
            raise ConfigError("robustness.grid eps values must be >= 0")
        if self.norm == "linf" and any(e > 1 for regions in self.grid.values() for eps in regions.values() for e in eps):
            raise ConfigError("robustness.grid: an L-inf eps above 1 means nothing for images in [0, 1]; expected "
                              "eps in [0, 1] (2/255 = 0.0078)")
        if self.samples is not None and self.samples < 1:
            raise ConfigError("robustness.samples must be >= 1 or none")
        check_buildable("robustness.grid / options", [*self.grid, *self.options],
                        lambda name: ATTACKS.get(name)(None, **self.attack_settings(name, 0.0, None)))
        if not 0 < self.block_fraction <= 1:
            raise ConfigError(f"robustness.block_fraction must be in (0, 1], got {self.block_fraction}")

    def attack_settings(self, name: str, eps: float, num_classes: int | None) -> dict[str, Any]:
        """Keyword arguments of attack `name`: the shared settings, then its own `options`."""
        settings = dict(eps=eps, norm=self.norm, steps=self.steps, step_size=self.step_size,
                        random_start=self.random_start, num_classes=num_classes)
        return settings | dict(self.options.get(name, {}))


def zero_gradient_fraction(model: torch.nn.Module, batches, regions: list[torch.Tensor]) -> float:
    """Share of samples (with a non-empty region) whose cross-entropy gradient is exactly zero on
    every pixel of their region."""
    zero = total = 0
    for batch, region in zip(batches, regions):
        x = batch.x.detach().requires_grad_(True)
        grad = torch.autograd.grad(F.cross_entropy(model(x), batch.y, reduction="sum"), x)[0]
        nonempty = region.flatten(1).amax(1) > 0
        zero += int(((grad * region).flatten(1).abs().amax(1) == 0)[nonempty].sum())
        total += int(nonempty.sum())
    return zero / max(total, 1)


def sanity_flags(rows: list[Measurement], clean: float, vanishing_regions: set[str]) -> None:
    """Add flags to robust-accuracy rows (in place):
    robust_above_clean     more accurate under attack than without;
    robust_rises_with_eps  more accurate than the same attack, region and seed at a smaller eps;
    noise_beats_attack     random +-eps noise in the same region and seed hurt more than the attack;
    vanishing_gradients    the region's input gradients are all zero for many samples (masking)."""
    robust = [r for r in rows if r.metric == "robust_accuracy"]
    noise = {(r.region, r.eps, r.attack_seed): r.value for r in robust if r.attack == "noise"}
    for r in robust:
        flags = list(r.flags)
        if r.value > clean + 1e-12:
            flags.append("robust_above_clean")
        smaller = [o.value for o in robust if (o.attack, o.region, o.norm, o.attack_seed) ==
                   (r.attack, r.region, r.norm, r.attack_seed) and o.eps < r.eps]
        if smaller and r.value > min(smaller) + 1e-12:
            flags.append("robust_rises_with_eps")
        baseline = noise.get((r.region, r.eps, r.attack_seed))
        if r.attack != "noise" and baseline is not None and baseline < r.value - 1e-12:
            flags.append("noise_beats_attack")
        if r.region in vanishing_regions:
            flags.append("vanishing_gradients")
        r.flags = tuple(dict.fromkeys(flags))


@SUITES.register("robustness")
class RobustnessSuite(Suite):
    """Robust accuracy per attack, region, eps and attack seed, with the attacked-area fraction."""

    Params = RobustnessParams

    def check(self, dataset) -> None:
        check_split(self.params.eval_set, dataset, "robustness.eval_set")
        classes = dataset.info.num_classes
        for attack, regions in self.params.grid.items():
            needed = ATTACKS.get(attack).min_classes
            if classes < needed:
                raise ConfigError(f"robustness.grid: attack {attack!r} needs at least {needed} classes; dataset "
                                  f"{dataset.name!r} has {classes}")
            for name in regions:
                check_region(name, dataset.regions())

    def run(self, ctx: EvalContext) -> list[Measurement]:
        p: RobustnessParams = self.params
        model = ctx.model.eval()
        batches = list(ctx.batches(ctx.split(p.eval_set), limit=p.samples))
        n = sum(len(b) for b in batches)
        with torch.no_grad():
            clean = sum(int((model(b.x).argmax(1) == b.y).sum()) for b in batches) / n
        out = [Measurement("robustness", "clean_accuracy", clean, n, eval_set=p.eval_set)]
        dataset_regions = ctx.dataset.regions()
        region_cache: dict[tuple[str, int], list[torch.Tensor]] = {}

        def regions_for(name: str, seed: int) -> list[torch.Tensor]:
            if (name, seed) not in region_cache:
                g = torch.Generator().manual_seed(seed)
                region_cache[(name, seed)] = [make_region(name, b, g, dataset_regions, p.block_fraction).to(b.x)
                                              for b in batches]
            return region_cache[(name, seed)]

        grid = dict(p.grid)
        if p.sanity and p.norm == "linf" and "noise" not in grid:
            noise: dict[str, set[float]] = {}
            for regions in p.grid.values():
                for region, eps_values in regions.items():
                    noise.setdefault(region, set()).update(eps_values)
            grid = {**grid, "noise": {r: sorted(e) for r, e in noise.items()}}
        vanishing: set[str] = set()
        if p.sanity:
            for region in sorted({r for regions in grid.values() for r in regions}):
                fraction = zero_gradient_fraction(model, batches, regions_for(region, p.seeds[0]))
                out.append(Measurement("robustness", "zero_gradient_fraction", fraction, n, eval_set=p.eval_set,
                                       region=region, attack_seed=p.seeds[0]))
                if fraction > VANISHING_FRACTION:
                    vanishing.add(region)
        for attack_name, regions in grid.items():
            for region_name, eps_values in regions.items():
                for eps in eps_values:
                    for seed in p.seeds:
                        out.append(self._measure(ctx, attack_name, region_name, eps, seed, batches,
                                                 regions_for(region_name, seed)))
        sanity_flags(out, clean, vanishing)
        return out

    def _measure(self, ctx, attack_name, region_name, eps, seed, batches, regions) -> Measurement:
        p: RobustnessParams = self.params
        settings = p.attack_settings(attack_name, eps, ctx.dataset.info.num_classes)
        try:
            attack = ATTACKS.get(attack_name)(ctx.model, **settings)
        except ValueError as err:  # e.g. a targeted attack on a dataset with too few classes
            raise ConfigError(f"robustness: attack {attack_name!r}: {err}") from None
        generator = torch.Generator().manual_seed(10_000 + seed)  # separate from the region generator
        correct, area, n = 0, 0.0, 0
        started = time.perf_counter()
        label = f"{attack_name} {region_name} eps={eps:.4g} seed={seed}"
        with ctx.reporter.task(f"  {label}", len(batches)) as update:
            for batch, region in zip(batches, regions):
                x_adv = attack(batch.x, batch.y, region, generator)
                with torch.no_grad():
                    correct += int((ctx.model(x_adv).argmax(1) == batch.y).sum())
                area += float(region.flatten(1).mean(1).sum())
                n += len(batch)
                update(robust_acc=correct / n)
        extra = {k: v for k, v in p.options.get(attack_name, {}).items() if k != "steps"}
        return Measurement(
            "robustness", "robust_accuracy", correct / n, n, eval_set=p.eval_set, attack=attack_name,
            region=region_name, norm=p.norm, eps=eps, steps=settings["steps"] if attack.iterative else None,
            step_size=settings["step_size"] if attack.iterative else None,
            attack_seed=seed, area_fraction=area / n, extra=extra, duration_s=time.perf_counter() - started,
        )
