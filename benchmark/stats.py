"""Intervals and paired tests: pure functions of counts and per-sample values.

- Wilson score interval of a proportion (Wilson 1927): accuracies over samples.
- Student-t interval of a mean over a few values: means over training seeds.
- Percentile bootstrap interval of a mean over samples (Efron 1979): attribution scores.
- Paired, hierarchical bootstrap of a difference (seeds, then samples within each seed, the same
  draws for both sides): a method against a reference on the same samples.
- Exact McNemar test (McNemar 1947) on the discordant pairs of two classifiers' per-sample outcomes.

Every random draw comes from a seeded numpy Generator: the same inputs give the same interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

LEVEL = 0.95
BOOTSTRAP_DRAWS = 2000


def z_value(level: float = LEVEL) -> float:
    """The two-sided standard-normal quantile (1.95996... at 95 %)."""
    return float(scipy_stats.norm.ppf(0.5 + level / 2))


def wilson_interval(successes: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion successes / n; (nan, nan) for n = 0."""
    if n <= 0:
        return math.nan, math.nan
    z = z_value(level)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class SeedSummary:
    """A mean over training seeds with its spread: mean, sample standard deviation, t-interval."""

    mean: float
    std: float
    low: float
    high: float
    n: int


def t_interval(values: Sequence[float], level: float = LEVEL) -> SeedSummary:
    """Mean, standard deviation (ddof 1) and Student-t interval of a few values (nan interval
    below two values)."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return SeedSummary(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return SeedSummary(mean, math.nan, math.nan, math.nan, 1)
    std = float(x.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return SeedSummary(mean, std, mean - half, mean + half, n)


def bootstrap_interval(values: np.ndarray, seed: int = 0, draws: int = BOOTSTRAP_DRAWS,
                       level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` over samples."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    return _percentiles(resample_means(x, (draws,), rng), level)


@dataclass(frozen=True)
class PairedDifference:
    """A method minus its reference on the same samples (and seeds): the mean difference, its
    bootstrap interval, whether the interval excludes 0, and the exact McNemar p-value when one
    seed of 0/1 outcomes is compared (None otherwise)."""

    difference: float
    low: float
    high: float
    seeds: int
    samples: int
    p_mcnemar: float | None = None

    @property
    def significant(self) -> bool:
        return not (math.isnan(self.low) or self.low <= 0 <= self.high)


def paired_bootstrap(method: Sequence[np.ndarray], reference: Sequence[np.ndarray], seed: int = 0,
                     draws: int = BOOTSTRAP_DRAWS, level: float = LEVEL) -> PairedDifference:
    """The mean of method - reference over seeds and samples, with a hierarchical paired bootstrap
    interval: each draw resamples the seeds, then the samples within each drawn seed, and takes the
    same draws on both sides. `method[k]` and `reference[k]` hold seed k's per-sample values, in the
    same sample order.

    With a few seeds, resampling them cannot show how far the mean could be from the truth (three
    seeds give at most their own range), so from two seeds on the interval is widened to cover the
    Student-t interval of the per-seed differences as well."""
    diffs = [np.asarray(m, dtype=np.float64) - np.asarray(r, dtype=np.float64) for m, r in zip(method, reference)]
    if not diffs or any(len(d) == 0 for d in diffs):
        return PairedDifference(math.nan, math.nan, math.nan, len(diffs), 0)
    observed = float(np.mean([d.mean() for d in diffs]))
    rng = np.random.default_rng(seed)
    slots = len(diffs)
    # For every seed, an independent resample of its samples per (draw, slot) it may fill.
    resampled = np.stack([resample_means(d, (draws, slots), rng) for d in diffs])
    chosen = rng.integers(0, slots, size=(draws, slots)) if slots > 1 else np.zeros((draws, 1), dtype=int)
    stats = resampled[chosen, np.arange(draws)[:, None], np.arange(slots)[None, :]].mean(axis=1)
    low, high = _percentiles(stats, level)
    if slots > 1:
        seeds = t_interval([d.mean() for d in diffs], level)
        low, high = min(low, seeds.low), max(high, seeds.high)
    p = None
    if len(diffs) == 1 and _binary(method[0]) and _binary(reference[0]):
        m, r = np.asarray(method[0]) > 0.5, np.asarray(reference[0]) > 0.5
        p = mcnemar_exact(int((m & ~r).sum()), int((~m & r).sum()))
    return PairedDifference(observed, low, high, len(diffs), int(sum(len(d) for d in diffs)), p)


def resample_means(values: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Means of bootstrap resamples (with replacement, of the full size) of `values`, one per
    entry of `shape`. Values with few distinct levels (0/1 outcomes, their differences) are
    resampled through multinomial counts of the levels, the same distribution without drawing
    every index."""
    n = len(values)
    levels, counts = np.unique(values, return_counts=True)
    if len(levels) <= 16:
        drawn = rng.multinomial(n, counts / n, size=shape)
        return drawn @ levels / n
    return values[rng.integers(0, n, size=(*shape, n))].mean(axis=-1)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs: b samples only the first
    classifier gets right, c only the second (a binomial test of b against n = b + c at 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(0, min(b, c) + 1)) / 2.0 ** n
    return min(1.0, 2 * tail)


def _binary(values: np.ndarray) -> bool:
    x = np.asarray(values)
    return bool(np.isin(x, (0.0, 1.0)).all())


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    low, high = np.quantile(values, [0.5 - level / 2, 0.5 + level / 2])
    return float(low), float(high)
