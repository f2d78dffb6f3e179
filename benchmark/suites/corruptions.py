"""Accuracy under common corruptions applied to the background only (the paper's ISIC protocol),
and core vs spurious accuracy (Singla & Feizi 2022; Singla et al. 2022): accuracy with Gaussian
noise of sd `core_spurious_sigma` on the background only (core accuracy: the object alone must
carry the prediction) and on the object only (spurious accuracy: what the background alone
carries), on the same samples and noise seeds."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import torch

from benchmark.attacks.regions import check_region, make_region
from benchmark.data.image_corruptions import corrupt
from benchmark.engine.evaluate import EvalContext, Piece, Suite, check_split
from benchmark.errors import ConfigError
from benchmark.registry import CORRUPTIONS, SUITES
from benchmark.results.records import Records
from benchmark.results.store import Measurement


@dataclass
class CorruptionParams:
    grid: dict[str, list[int]] = field(default_factory=lambda: {
        "brightness": [1, 3, 5], "defocus_blur": [1, 3, 5], "snow": [1, 3, 5]})  # corruption -> severities
    region: str = "background"
    seeds: tuple[int, ...] = (0,)
    samples: int | None = 512
    eval_set: str = "test"
    core_spurious_sigma: float | None = 0.25  # sd of the Gaussian noise of core / spurious accuracy; None: off

    def __post_init__(self) -> None:
        if self.core_spurious_sigma is not None and not self.core_spurious_sigma > 0:
            raise ConfigError(f"corruptions.core_spurious_sigma must be > 0 or none, got {self.core_spurious_sigma}")
        for name, severities in self.grid.items():
            if name not in CORRUPTIONS:
                raise ConfigError(f"corruptions.grid: unknown corruption {name!r}; expected one of "
                                  f"{', '.join(CORRUPTIONS.names())}")
            if not severities or any(s not in (1, 2, 3, 4, 5) for s in severities):
                raise ConfigError(f"corruptions.grid[{name!r}]: severities must be integers 1 to 5")
        if not self.seeds:
            raise ConfigError("corruptions.seeds must list at least one seed")
        if self.samples is not None and self.samples < 1:
            raise ConfigError("corruptions.samples must be >= 1 or none")


@SUITES.register("corruptions")
class CorruptionSuite(Suite):
    """Accuracy per corruption, severity and seed, the corruption confined to `region`."""

    Params = CorruptionParams

    def check(self, dataset) -> None:
        check_split(self.params.eval_set, dataset, "corruptions.eval_set")
        check_region(self.params.region, dataset.regions())

    def pieces(self, ctx: EvalContext) -> list[Piece]:
        """One piece per (corruption, severity, seed); regions are drawn once per seed from their
        own generator, so every corruption and severity of a seed sees the same regions."""
        p: CorruptionParams = self.params
        batches = list(ctx.batches(ctx.split(p.eval_set), limit=p.samples))
        dataset_regions = ctx.dataset.regions()
        regions = {}
        for seed in p.seeds:
            g = torch.Generator().manual_seed(seed)
            regions[seed] = [make_region(p.region, b, g, dataset_regions).to(b.x) for b in batches]
        out: list[Piece] = [partial(self._measure, ctx, batches, regions[seed], name, severity, seed)
                            for name, severities in p.grid.items() for severity in severities for seed in p.seeds]
        if p.core_spurious_sigma is not None:
            out += [partial(self._core_spurious, ctx, batches, seed) for seed in p.seeds]
        return out

    @torch.no_grad()
    def _core_spurious(self, ctx: EvalContext, batches, seed: int) -> list[Measurement]:
        """Accuracy with Gaussian noise on the background only (core) and on the object only
        (spurious), clamped to [0, 1]; both draw the same noise from the seed."""
        p: CorruptionParams = self.params
        sigma = float(p.core_spurious_sigma or 0.0)
        model = ctx.model.eval()
        rows = []
        for metric, region in (("core_accuracy", "background"), ("spurious_accuracy", "foreground")):
            started = time.perf_counter()
            noise_gen = torch.Generator().manual_seed(seed)
            parts, area = [], 0.0
            for batch in batches:
                where = make_region(region, batch, noise_gen).to(batch.x)
                x = noisy_in(batch.x, where, sigma, noise_gen)
                parts.append(Records.of(batch.index, (model(x).argmax(1) == batch.y).float()))
                area += float(where.flatten(1).mean(1).sum())
            rows.append(Measurement.of_records(
                "corruptions", metric, Records.concat(parts), eval_set=p.eval_set, attack="gaussian_noise",
                region=region, attack_seed=seed, area_fraction=area / sum(len(b) for b in batches),
                extra={"sigma": sigma}, duration_s=time.perf_counter() - started))
        return rows

    @torch.no_grad()
    def _measure(self, ctx: EvalContext, batches, regions, name: str, severity: int, seed: int) -> list[Measurement]:
        p: CorruptionParams = self.params
        model = ctx.model.eval()
        started = time.perf_counter()
        noise_gen = torch.Generator().manual_seed(seed)
        parts = []
        for batch, region in zip(batches, regions):
            x = corrupt(batch.x, name, severity, region, noise_gen)
            parts.append(Records.of(batch.index, (model(x).argmax(1) == batch.y).float()))
        area = sum(float(r.flatten(1).mean(1).sum()) for r in regions) / sum(len(b) for b in batches)
        row = Measurement.of_records("corruptions", "corrupted_accuracy", Records.concat(parts),
                                     eval_set=p.eval_set, attack=name, region=p.region, severity=severity,
                                     attack_seed=seed, area_fraction=area, duration_s=time.perf_counter() - started)
        ctx.reporter.log(f"  {name} severity {severity} in {p.region}: {row.value:.4f}")
        return [row]


def noisy_in(x: torch.Tensor, region: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """x with Gaussian noise of sd `sigma` added where `region` is 1, clamped to [0, 1] there; every
    pixel outside the region is returned bit for bit."""
    noise = torch.randn(x.shape, generator=generator).to(x) * sigma
    return torch.where(region > 0, (x + noise).clamp(0, 1), x)
