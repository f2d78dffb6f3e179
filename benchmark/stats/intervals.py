"""Intervals, paired tests and multiplicity: pure functions of counts and per-sample values.

- Wilson score interval of a proportion (Wilson 1927): accuracies over samples.
- Student-t interval of a mean over a few values: means over training seeds.
- Crossed bootstrap of a mean over training seeds and test samples: every seed of a configuration
  is evaluated on the same test samples, so one draw resamples the seeds and, once for all of
  them, the sample ids (a two-way random design; McCullagh 2000, Owen 2007). Resampling samples
  within each seed separately treats the shared samples as independent and is too narrow.
- The interval of a cell or a difference over several seeds: the crossed bootstrap's percentile
  interval, widened to the Student-t interval of the per-seed values where that is wider (a
  bootstrap over three seeds cannot reach beyond their range).
- Exact McNemar test (McNemar 1947) on the discordant pairs of two classifiers' per-sample outcomes.
- Holm's step-down adjustment (Holm 1979) of the p-values of the comparisons one page shows.

Every random draw comes from a seeded numpy Generator: the same inputs give the same interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

LEVEL = 0.95
ALPHA = 1 - LEVEL
BOOTSTRAP_DRAWS = 2000
_CHUNK_ENTRIES = 4_000_000  # multinomial weights drawn at once (draws x distinct samples)


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

    @property
    def p(self) -> float:
        """Two-sided one-sample t-test of mean 0 (nan below two values)."""
        if self.n < 2:
            return math.nan
        if self.std == 0:
            return 1.0 if self.mean == 0 else 0.0
        t = self.mean / (self.std / math.sqrt(self.n))
        return float(2 * scipy_stats.t.sf(abs(t), self.n - 1))


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


def crossed_means(values: np.ndarray, rng: np.random.Generator, draws: int = BOOTSTRAP_DRAWS) -> np.ndarray:
    """Bootstrap means of a (seeds, samples) array whose seeds share their samples: each draw
    resamples the seeds and, once for every seed, the sample ids (with replacement, full sizes).

    Samples with the same values across every seed (0/1 outcomes give few such patterns) are
    resampled through multinomial counts of the patterns: the same distribution, drawn cheaply."""
    x = np.atleast_2d(np.asarray(values, dtype=np.float64))
    seeds, n = x.shape
    patterns, counts = np.unique(x.T, axis=0, return_counts=True)  # (patterns, seeds)
    per_seed = np.empty((draws, seeds))
    chunk = max(1, _CHUNK_ENTRIES // len(patterns))
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        weights = rng.multinomial(n, counts / n, size=size)  # (size, patterns)
        per_seed[start:start + size] = weights @ patterns / n
    if seeds == 1:
        return per_seed[:, 0]
    picks = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=draws)  # seed counts per draw
    return (picks * per_seed).sum(axis=1) / seeds


@dataclass(frozen=True)
class Interval:
    """A mean with its interval over seeds and samples and the two-sided p-value of mean 0 that
    goes with it (the larger of the bootstrap's and the seeds' t-test)."""

    mean: float
    low: float
    high: float
    p: float


def seed_sample_interval(values: np.ndarray, seed: int = 0, draws: int = BOOTSTRAP_DRAWS,
                         level: float = LEVEL) -> Interval:
    """The mean of a (seeds, samples) array on shared samples, with the crossed bootstrap's
    percentile interval, widened to the t-interval of the per-seed means from two seeds on."""
    x = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan)
    stats = crossed_means(x, np.random.default_rng(seed), draws)
    mean = float(x.mean())
    low, high = _percentiles(stats, level)
    p = bootstrap_p(stats)
    if len(x) > 1:
        seeds = t_interval(x.mean(axis=1), level)
        low, high, p = min(low, seeds.low), max(high, seeds.high), max(p, seeds.p)
    return Interval(mean, low, high, p)


def bootstrap_p(stats: np.ndarray) -> float:
    """Two-sided bootstrap p-value of 0 (twice the smaller tail at 0, at most 1): below 5 %
    exactly when 0 lies outside the 95 % percentile interval."""
    if len(stats) == 0:
        return math.nan
    below, above = float(np.mean(stats <= 0)), float(np.mean(stats >= 0))
    return min(1.0, 2 * min(below, above))


def bootstrap_interval(values: np.ndarray, seed: int = 0, draws: int = BOOTSTRAP_DRAWS,
                       level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` over samples."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return math.nan, math.nan
    return _percentiles(crossed_means(x[None], np.random.default_rng(seed), draws), level)


@dataclass(frozen=True)
class PairedDifference:
    """A method minus its reference on the same samples (and seeds): the mean difference, its
    interval, the p-value of no difference (exact McNemar for one seed of 0/1 outcomes, else the
    interval's), and the p-value after adjusting for the other comparisons shown beside it (set
    by `holm_adjusted`; None until then). A star means significant after the adjustment."""

    difference: float
    low: float
    high: float
    seeds: int
    samples: int
    p_mcnemar: float | None = None
    p: float = math.nan
    p_adjusted: float | None = None

    @property
    def excludes_zero(self) -> bool:
        """The unadjusted interval excludes 0."""
        return not (math.isnan(self.low) or self.low <= 0 <= self.high)

    @property
    def significant(self) -> bool:
        """Significant at 5 % after the adjustment when one was made, else by the interval."""
        if self.p_adjusted is not None:
            return self.p_adjusted < ALPHA
        return self.excludes_zero


def paired_bootstrap(method: Sequence[np.ndarray], reference: Sequence[np.ndarray], seed: int = 0,
                     draws: int = BOOTSTRAP_DRAWS, level: float = LEVEL) -> PairedDifference:
    """The mean of method - reference over seeds and samples. `method[k]` and `reference[k]` hold
    seed k's per-sample values in one sample order, the same for every seed (the design of this
    benchmark: a fixed evaluation subset): a crossed bootstrap draws seeds and sample ids jointly,
    widened to the t-interval of the per-seed differences. Seeds evaluated on different numbers
    of samples cannot share sample ids; they are resampled seed by seed (a nested bootstrap)."""
    diffs = [np.asarray(m, dtype=np.float64) - np.asarray(r, dtype=np.float64) for m, r in zip(method, reference)]
    if not diffs or any(len(d) == 0 for d in diffs):
        return PairedDifference(math.nan, math.nan, math.nan, len(diffs), 0)
    samples = int(sum(len(d) for d in diffs))
    if len({len(d) for d in diffs}) == 1:
        interval = seed_sample_interval(np.stack(diffs), seed, draws, level)
    else:
        interval = _nested_interval(diffs, seed, draws, level)
    p_mcnemar = None
    if len(diffs) == 1 and _binary(method[0]) and _binary(reference[0]):
        m, r = np.asarray(method[0]) > 0.5, np.asarray(reference[0]) > 0.5
        p_mcnemar = mcnemar_exact(int((m & ~r).sum()), int((~m & r).sum()))
    p = p_mcnemar if p_mcnemar is not None else interval.p
    return PairedDifference(interval.mean, interval.low, interval.high, len(diffs), samples, p_mcnemar, p)


def _nested_interval(diffs: list[np.ndarray], seed: int, draws: int, level: float) -> Interval:
    """Seeds resampled, then samples within each drawn seed (for seeds on different samples)."""
    rng = np.random.default_rng(seed)
    slots = len(diffs)
    resampled = np.stack([np.stack([crossed_means(d[None], rng, draws) for _ in range(slots)], axis=1)
                          for d in diffs])  # (seed, draw, slot)
    chosen = rng.integers(0, slots, size=(draws, slots))
    stats = resampled[chosen, np.arange(draws)[:, None], np.arange(slots)[None, :]].mean(axis=1)
    low, high = _percentiles(stats, level)
    seeds = t_interval([d.mean() for d in diffs], level)
    return Interval(float(np.mean([d.mean() for d in diffs])), min(low, seeds.low), max(high, seeds.high),
                    max(bootstrap_p(stats), seeds.p))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs: b samples only the first
    classifier gets right, c only the second (a binomial test of b against n = b + c at 1/2),
    computed from the binomial distribution's tail, so any n works."""
    n = b + c
    if n == 0:
        return 1.0
    return float(min(1.0, 2 * scipy_stats.binom.cdf(min(b, c), n, 0.5)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (familywise error at most alpha when a comparison is
    called significant at adjusted p < alpha); nan p-values stay nan and do not count."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(len(p), np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return [float(v) for v in out]


def _binary(values: np.ndarray) -> bool:
    x = np.asarray(values)
    return bool(np.isin(x, (0.0, 1.0)).all())


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    low, high = np.quantile(values, [0.5 - level / 2, 0.5 + level / 2])
    return float(low), float(high)


def holm_adjusted(differences: Sequence[PairedDifference]) -> list[PairedDifference]:
    """The differences with `p_adjusted` set by Holm's method over all of them: the family is
    every comparison one table or board shows."""
    adjusted = holm([d.p for d in differences])
    return [replace(d, p_adjusted=None if math.isnan(a) else a) for d, a in zip(differences, adjusted)]
