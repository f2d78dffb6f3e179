"""Robust accuracy under attacks confined to regions (background, block, full image, ...).

Every (attack, region, eps, attack seed) is one row with its settings and the attacked-area
fraction; where several attacks (the noise baseline included) ran at one (region, eps,
attack seed), a `worst_case` row counts a sample robust only if it survives all of them. Regions
are drawn once per (region, seed) from their own generator, so every attack and the noise
baseline of a seed see the same blocks. Sanity flags (RobustBench style) are written into the
rows: see `sanity_flags`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.attacks import settings_of
from benchmark.attacks.regions import check_region, make_region
from benchmark.engine.evaluate import EvalContext, Piece, Suite, check_split
from benchmark.errors import ConfigError
from benchmark.registry import ATTACKS, SUITES
from benchmark.results.records import Records
from benchmark.results.store import WORST_CASE, Measurement

BASELINE_METRIC = "baseline_accuracy"  # a random baseline attack's rows (never ranked)
SANITY_BASELINE = "noise"  # the random attack every gradient attack must beat (its class sets `baseline`)
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
        values = [e for regions in self.grid.values() for eps in regions.values() for e in eps]
        if self.norm == "linf" and any(e > 1 for e in values):
            raise ConfigError("robustness.grid: an L-inf eps above 1 means nothing for images in [0, 1]; expected "
                              "eps in [0, 1] (2/255 = 0.0078)")
        if self.samples is not None and self.samples < 1:
            raise ConfigError("robustness.samples must be >= 1 or none")
        for name in sorted({*self.grid, *self.options}):  # every attack's settings, from its declared Params
            eps_values = sorted({e for values in self.grid.get(name, {}).values() for e in values}) or [0.0]
            for eps in eps_values:
                settings_of(ATTACKS.get(name), self.attack_settings(name, eps), f"robustness.options.{name}")
        if not 0 < self.block_fraction <= 1:
            raise ConfigError(f"robustness.block_fraction must be in (0, 1], got {self.block_fraction}")

    def attack_settings(self, name: str, eps: float) -> dict[str, Any]:
        """Settings of attack `name`: the shared ones, then its own `options`."""
        settings = dict(eps=eps, norm=self.norm, steps=self.steps, step_size=self.step_size,
                        random_start=self.random_start)
        return settings | dict(self.options.get(name, {}))


def zero_gradients(model: torch.nn.Module, batches, regions: list[torch.Tensor]) -> Records:
    """Per sample with a non-empty region: 1.0 when its cross-entropy gradient is exactly zero on
    every pixel of its region."""
    parts = []
    for batch, region in zip(batches, regions):
        x = batch.x.detach().requires_grad_(True)
        grad = torch.autograd.grad(F.cross_entropy(model(x), batch.y, reduction="sum"), x)[0]
        nonempty = region.flatten(1).amax(1) > 0
        zero = ((grad * region).flatten(1).abs().amax(1) == 0).float()
        parts.append(Records.of(batch.index[nonempty.cpu()], zero[nonempty]))
    return Records.concat(parts)


def worst_case_rows(rows: list[Measurement]) -> list[Measurement]:
    """Per (region, norm, eps, attack seed) where two or more attacks (the noise baseline
    included) ran: robust accuracy counting a sample robust only if it survives every one of them
    (AutoAttack's and RobustBench's rule), on the samples they all have records for. Each attack
    alone only bounds robustness from above; this is the tightest bound the run measured."""
    settings: dict[tuple, list[Measurement]] = {}
    for r in rows:
        if r.metric in ("robust_accuracy", BASELINE_METRIC) and r.attack != WORST_CASE:
            settings.setdefault((r.region, r.norm, r.eps, r.attack_seed), []).append(r)
    out = []
    for (region, norm, eps, seed), members in settings.items():
        if len(members) < 2 or any(m.records is None for m in members):
            continue
        samples = members[0].records.sample  # type: ignore[union-attr]
        for m in members[1:]:
            samples = np.intersect1d(samples, m.records.sample)  # type: ignore[union-attr]
        if not len(samples):
            continue
        values = np.min([_values_at(m.records, samples) for m in members], axis=0)  # type: ignore[arg-type]
        out.append(Measurement.of_records(
            "robustness", "robust_accuracy", Records(samples, values), eval_set=members[0].eval_set,
            attack=WORST_CASE, region=region, norm=norm, eps=eps, attack_seed=seed,
            area_fraction=members[0].area_fraction, extra={"over": sorted(str(m.attack) for m in members)},
            duration_s=0.0))
    return out


def _values_at(records: Records, samples: np.ndarray) -> np.ndarray:
    order = np.argsort(records.sample, kind="stable")
    return records.value[order][np.searchsorted(records.sample[order], samples)]


def sanity_flags(rows: list[Measurement], vanishing_regions: set[str]) -> None:
    """Add flags to robust-accuracy rows (in place):
    robust_rises_with_eps  more accurate than the same attack, region and seed at a smaller eps;
    noise_beats_attack     random +-eps noise in the same region and seed hurt more than the attack;
    vanishing_gradients    the region's input gradients are all zero for many samples (masking).
    (Robust above clean cannot happen: a sample counts as robust only if it is correct clean.)"""
    robust = [r for r in rows if r.metric in ("robust_accuracy", BASELINE_METRIC)]
    baselines = {r.attack for r in robust if r.metric == BASELINE_METRIC}
    noise = {(r.region, r.eps, r.attack_seed): r.value for r in robust if r.attack in baselines}
    for r in robust:
        flags = list(r.flags)
        smaller = [o.value for o in robust if (o.attack, o.region, o.norm, o.attack_seed) ==
                   (r.attack, r.region, r.norm, r.attack_seed) and (o.eps or 0.0) < (r.eps or 0.0)]
        if smaller and r.value > min(smaller) + 1e-12:
            flags.append("robust_rises_with_eps")
        baseline = noise.get((r.region, r.eps, r.attack_seed))
        if r.attack not in baselines and baseline is not None and baseline < r.value - 1e-12:
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

    def pieces(self, ctx: EvalContext) -> list[Piece]:
        """The clean row, the input-gradient check per region, then one piece per (attack, region,
        eps, attack seed). Every rank scores the clean samples once (each attack needs them) and
        draws a region from its own generator per (region, seed), so pieces are independent."""
        p: RobustnessParams = self.params
        model = ctx.model.eval()
        batches = list(ctx.batches(ctx.split(p.eval_set), limit=p.samples))
        with torch.no_grad():
            correct = [model(b.x).argmax(1) == b.y for b in batches]
        clean_records = Records.concat([Records.of(b.index, c.float()) for b, c in zip(batches, correct)])
        clean = Measurement.of_records("robustness", "clean_accuracy", clean_records, eval_set=p.eval_set)
        dataset_regions = ctx.dataset.regions()
        region_cache: dict[tuple[str, int], list[torch.Tensor]] = {}

        def regions_for(name: str, seed: int) -> list[torch.Tensor]:
            if (name, seed) not in region_cache:
                g = torch.Generator().manual_seed(seed)
                region_cache[(name, seed)] = [make_region(name, b, g, dataset_regions, p.block_fraction).to(b.x)
                                              for b in batches]
            return region_cache[(name, seed)]

        def zero_row(region: str) -> list[Measurement]:
            return [Measurement.of_records("robustness", "zero_gradient_fraction",
                                           zero_gradients(model, batches, regions_for(region, p.seeds[0])),
                                           eval_set=p.eval_set, region=region, attack_seed=p.seeds[0])]

        def attack_row(attack: str, region: str, eps: float, seed: int) -> list[Measurement]:
            return [self._measure(ctx, attack, region, eps, seed, batches, regions_for(region, seed), correct)]

        grid = self.grid()
        out: list[Piece] = [lambda: [clean]]
        if p.sanity:
            out += [partial(zero_row, region) for region in sorted({r for regions in grid.values() for r in regions})]
        out += [partial(attack_row, attack, region, eps, seed) for attack, regions in grid.items()
                for region, eps_values in regions.items() for eps in eps_values for seed in p.seeds]
        return out

    def combine(self, ctx: EvalContext, rows: list[Measurement]) -> list[Measurement]:
        vanishing = {r.region for r in rows if r.metric == "zero_gradient_fraction" and r.region is not None
                     and r.value > VANISHING_FRACTION}
        rows = rows + worst_case_rows(rows)
        sanity_flags(rows, vanishing)
        return rows

    def grid(self) -> dict[str, dict[str, list[float]]]:
        """The configured attacks, and the random-noise baseline at every (region, eps) they use."""
        p: RobustnessParams = self.params
        if not (p.sanity and p.norm == "linf" and SANITY_BASELINE not in p.grid):
            return dict(p.grid)
        noise: dict[str, set[float]] = {}
        for regions in p.grid.values():
            for region, eps_values in regions.items():
                noise.setdefault(region, set()).update(eps_values)
        return {**p.grid, SANITY_BASELINE: {r: sorted(e) for r, e in noise.items()}}

    def _measure(self, ctx, attack_name, region_name, eps, seed, batches, regions, clean) -> Measurement:
        """One attack setting; a sample is robust only if it is classified correctly both clean
        and under the attack (RobustBench's rule), so robust <= clean for every sample."""
        p: RobustnessParams = self.params
        settings = p.attack_settings(attack_name, eps)
        attack = ATTACKS.get(attack_name)(ctx.model, num_classes=ctx.dataset.info.num_classes, **settings)
        generator = torch.Generator().manual_seed(10_000 + seed)  # separate from the region generator
        parts, area, n, robust = [], 0.0, 0, 0
        started = time.perf_counter()
        label = f"{attack_name} {region_name} eps={eps:.4g} seed={seed}"
        with ctx.reporter.task(f"  {label}", len(batches)) as update:
            for batch, region, correct in zip(batches, regions, clean):
                x_adv = attack(batch.x, batch.y, region, generator)
                with torch.no_grad():
                    held = (ctx.model(x_adv).argmax(1) == batch.y) & correct
                parts.append(Records.of(batch.index, held.float()))
                area += float(region.flatten(1).mean(1).sum())
                n += len(batch)
                robust += int(held.sum())
                update(robust_acc=robust / n)
        extra = {k: v for k, v in p.options.get(attack_name, {}).items() if k != "steps"}
        metric = BASELINE_METRIC if attack.baseline else "robust_accuracy"
        return Measurement.of_records(
            "robustness", metric, Records.concat(parts), eval_set=p.eval_set, attack=attack_name,
            region=region_name, norm=p.norm, eps=eps, steps=settings["steps"] if attack.iterative else None,
            step_size=settings["step_size"] if attack.iterative else None,
            attack_seed=seed, area_fraction=area / n, extra=extra, duration_s=time.perf_counter() - started,
        )
