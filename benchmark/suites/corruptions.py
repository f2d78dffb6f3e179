"""Accuracy under common corruptions applied to the background only (the paper's ISIC protocol)."""

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

    def __post_init__(self) -> None:
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
        return [partial(self._measure, ctx, batches, regions[seed], name, severity, seed)
                for name, severities in p.grid.items() for severity in severities for seed in p.seeds]

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
