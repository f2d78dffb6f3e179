"""Rank correlations between models, with bootstrap intervals and permutation p-values: the
maths of the relation analysis.

Spearman's rho is the Pearson correlation of average ranks (ties share their mean rank). The
partial rho given a control z removes what both variables share with z (here clean accuracy: a
better model tends to be better at everything), from the three pairwise rhos. Intervals resample
the models with replacement; every variable is ranked once per draw, so many pairs cost little.
A bootstrap over a handful of models is coarse (its bounds jump with the resampling seed), so
the p-value of "no relation" comes from permuting one variable's ranks: every permutation below
EXACT_BELOW models (an exact test), else a seeded sample of them.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.stats import rankdata

from benchmark.stats.intervals import BOOTSTRAP_DRAWS, LEVEL

EXACT_BELOW = 8  # models: below this, every permutation (7! = 5,040) is enumerated
PERMUTATIONS = 9999  # sampled permutations from EXACT_BELOW models on


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (nan when either variable is constant or there are under three values)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 3:
        return math.nan
    return float(rank_correlation(rankdata(x)[None], rankdata(y)[None])[0])


def partial_from(rxy: np.ndarray | float, rxz: np.ndarray | float, ryz: np.ndarray | float) -> np.ndarray:
    """The partial correlation of x and y given z from the three pairwise correlations."""
    rxy, rxz, ryz = (np.asarray(v, dtype=np.float64) for v in (rxy, rxz, ryz))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2))


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Spearman's rho of x and y given z (nan when it is undefined, e.g. x follows z exactly)."""
    return float(partial_from(spearman(x, y), spearman(x, z), spearman(y, z)))


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of two (draws, n) rank arrays (nan for a constant row)."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


class ModelBootstrap:
    """Every variable of the same models, resampled by the same draws of models: the bootstrap
    distribution of any pair's rho and of its partial rho given a control, at little cost per pair."""

    def __init__(self, variables: dict[str, np.ndarray], seed: int = 0, draws: int = BOOTSTRAP_DRAWS):
        self.names = list(variables)
        data = np.stack([np.asarray(variables[n], dtype=np.float64) for n in self.names])  # (variables, models)
        self.models = data.shape[1]
        picks = np.random.default_rng(seed).integers(0, self.models, size=(draws, self.models))
        self.observed = rankdata(data, axis=-1)  # (variables, models)
        self.ranks = rankdata(data[:, picks], axis=-1)  # (variables, draws, models)
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self.seed = seed
        self._perms: np.ndarray | None = None

    def _draws(self, a: str, b: str) -> np.ndarray:
        key = (a, b) if a <= b else (b, a)
        if key not in self._cache:
            i, j = self.names.index(key[0]), self.names.index(key[1])
            self._cache[key] = rank_correlation(self.ranks[i], self.ranks[j])
        return self._cache[key]

    def rho(self, a: str, b: str, level: float = LEVEL) -> tuple[float, float, float]:
        """Spearman's rho of a and b over the models, and its percentile interval."""
        i, j = self.names.index(a), self.names.index(b)
        observed = float(rank_correlation(self.observed[i][None], self.observed[j][None])[0])
        return (observed, *percentiles(self._draws(a, b), level))

    def permutation_p(self, a: str, b: str, control: str | None = None) -> float:
        """Two-sided permutation p-value of rho(a, b) (or, with `control`, of the partial rho given
        it) under no relation: a's ranks permuted against the others'."""
        i, j = self.names.index(a), self.names.index(b)
        x, y = self.observed[i], self.observed[j]
        shuffled = x[self._permutations()]  # (permutations, models)
        rho = rank_correlation(shuffled, y[None])
        observed = float(rank_correlation(x[None], y[None])[0])
        if control is not None:
            z = self.observed[self.names.index(control)]
            rho = partial_from(rho, rank_correlation(shuffled, z[None]), rank_correlation(y[None], z[None]))
            observed = float(partial_from(observed, rank_correlation(x[None], z[None])[0],
                                          rank_correlation(y[None], z[None])[0]))
        if not math.isfinite(observed):
            return math.nan
        extreme = int(np.sum(np.abs(np.nan_to_num(rho)) >= abs(observed) - 1e-12))
        if self.models < EXACT_BELOW:  # the enumeration holds the identity: extreme >= 1
            return extreme / len(rho)
        return (1 + extreme) / (1 + len(rho))

    def _permutations(self) -> np.ndarray:
        if self._perms is None:
            if self.models < EXACT_BELOW:
                self._perms = np.array(list(itertools.permutations(range(self.models))))
            else:
                rng = np.random.default_rng(self.seed + 1)
                self._perms = np.argsort(rng.random((PERMUTATIONS, self.models)), axis=1)
        return self._perms

    def partial(self, a: str, b: str, control: str, level: float = LEVEL) -> tuple[float, float, float]:
        """Spearman's rho of a and b given `control`, and its percentile interval."""
        observed = float(partial_from(self.rho(a, b)[0], self.rho(a, control)[0], self.rho(b, control)[0]))
        draws = partial_from(self._draws(a, b), self._draws(a, control), self._draws(b, control))
        return (observed, *percentiles(draws, level))


def percentiles(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of the finite draws (nan when under half of them are finite)."""
    finite = draws[np.isfinite(draws)]
    if len(finite) < len(draws) / 2:
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def split_half_difference(pairs: list[tuple[np.ndarray, np.ndarray]], seed: int = 0,
                          draws: int = BOOTSTRAP_DRAWS) -> tuple[float, float, float]:
    """Within a model: robust accuracy of the samples whose score is above the run's median minus
    that of the samples below it, averaged over runs (`pairs` = (score, robust) per run, on the
    same samples), with a bootstrap interval that resamples runs, then samples within each."""
    pairs = [(np.asarray(s, dtype=np.float64), np.asarray(r, dtype=np.float64)) for s, r in pairs if len(s) >= 4]
    if not pairs:
        return math.nan, math.nan, math.nan
    observed = float(np.mean([halves(s[None], r[None])[0] for s, r in pairs]))
    rng = np.random.default_rng(seed)
    per_run = np.stack([halves(s[pick], r[pick]) for s, r in pairs
                        for pick in [rng.integers(0, len(s), size=(draws, len(s)))]])  # (runs, draws)
    chosen = rng.integers(0, len(pairs), size=(draws, len(pairs))) if len(pairs) > 1 else np.zeros((draws, 1), int)
    stats = per_run[chosen, np.arange(draws)[:, None]].mean(axis=1)
    return (observed, *percentiles(stats))


def halves(score: np.ndarray, robust: np.ndarray) -> np.ndarray:
    """Per row: mean robust outcome of the upper half by score minus that of the lower half (ties
    broken by position, the middle sample of an odd count left out)."""
    order = np.argsort(score, axis=-1, kind="stable")
    half = score.shape[-1] // 2
    ranked = np.take_along_axis(robust, order, axis=-1)
    return ranked[:, score.shape[-1] - half:].mean(-1) - ranked[:, :half].mean(-1)
