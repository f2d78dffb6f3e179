"""Intervals and paired tests against closed forms, scipy and a coverage simulation."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from benchmark.stats import (
    PairedDifference,
    bootstrap_interval,
    mcnemar_exact,
    paired_bootstrap,
    t_interval,
    wilson_interval,
)

Z = 1.959963984540054  # the standard-normal 97.5 % quantile


def test_wilson_interval_matches_its_closed_form():
    for k, n in ((0, 10), (7, 10), (10, 10), (181, 256), (1, 1)):
        p = k / n
        centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
        half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
        low, high = wilson_interval(k, n)
        assert low == pytest.approx(max(0, centre - half), abs=1e-12)
        assert high == pytest.approx(min(1, centre + half), abs=1e-12)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0) and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_t_interval_uses_the_student_quantile_of_n_minus_one_degrees():
    # t quantiles at 97.5 %: 12.7062047362 (1 df), 4.30265272975 (2 df), 2.77644510520 (4 df)
    for values, t in (([0.5, 0.7], 12.7062047362), ([0.68, 0.37, 0.56], 4.30265272975),
                      ([1.0, 2.0, 3.0, 4.0, 5.0], 2.77644510520)):
        s = t_interval(values)
        mean, sd = np.mean(values), np.std(values, ddof=1)
        assert s.mean == pytest.approx(mean) and s.std == pytest.approx(sd) and s.n == len(values)
        assert s.high - mean == pytest.approx(t * sd / math.sqrt(len(values)), rel=1e-9)
        assert mean - s.low == pytest.approx(t * sd / math.sqrt(len(values)), rel=1e-9)
    one = t_interval([0.4])
    assert one.mean == 0.4 and math.isnan(one.low) and math.isnan(one.std)


@pytest.mark.parametrize("b, c", [(0, 0), (3, 10), (10, 3), (0, 7), (25, 18), (40, 61)])
def test_exact_mcnemar_equals_a_binomial_test_of_the_discordant_pairs(b, c):
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)


def test_paired_bootstrap_is_reproducible_and_pairs_samples():
    rng = np.random.default_rng(0)
    method = [(rng.random(300) < 0.7).astype(float) for _ in range(3)]
    reference = [(rng.random(300) < 0.6).astype(float) for _ in range(3)]
    a, b = paired_bootstrap(method, reference), paired_bootstrap(method, reference)
    assert a == b and a.seeds == 3 and a.samples == 900 and a.p_mcnemar is None
    assert a.difference == pytest.approx(np.mean([m.mean() - r.mean() for m, r in zip(method, reference)]))
    same = paired_bootstrap(method, method)
    assert same.difference == 0 and same.low == 0 and same.high == 0 and not same.significant
    single = paired_bootstrap(method[:1], reference[:1])
    b_, c_ = int(((method[0] == 1) & (reference[0] == 0)).sum()), int(((method[0] == 0) & (reference[0] == 1)).sum())
    assert single.p_mcnemar == pytest.approx(binomtest(b_, b_ + c_, 0.5).pvalue)


@pytest.mark.parametrize("seeds", [1, 3])
def test_paired_bootstrap_covers_the_true_difference_in_at_least_90_percent_of_200_trials(seeds):
    """Per sample a latent difficulty; the method is right with 5 points more probability than the
    reference, on the same samples: the true mean difference is 0.05."""
    rng = np.random.default_rng(123)
    covered = 0
    for trial in range(200):
        method, reference = [], []
        for _ in range(seeds):
            p = rng.uniform(0.3, 0.85, size=200)
            u = rng.random(200)
            method.append((u < p + 0.05).astype(float))  # the same uniform: paired outcomes
            reference.append((u < p).astype(float))
        d = paired_bootstrap(method, reference, seed=trial)
        covered += d.low <= 0.05 <= d.high
    assert covered >= 180, covered


def test_with_three_seeds_whose_effects_differ_the_interval_still_covers_the_mean_effect():
    """Training seeds change the effect itself (here by 8 points sd around +5): the interval of
    the mean over three seeds must say so, as a bootstrap over three seeds alone cannot."""
    rng = np.random.default_rng(7)
    covered = 0
    for trial in range(200):
        method, reference = [], []
        for effect in rng.normal(0.05, 0.08, size=3):
            p = rng.uniform(0.3, 0.85, size=256)
            u = rng.random(256)
            method.append((u < np.clip(p + effect, 0, 1)).astype(float))
            reference.append((u < p).astype(float))
        d = paired_bootstrap(method, reference, seed=trial)
        covered += d.low <= 0.05 <= d.high
    assert covered >= 180, covered


def test_bootstrap_interval_of_a_mean_covers_it_and_narrows_with_samples():
    rng = np.random.default_rng(1)
    small, large = rng.random(20), rng.random(2000)
    lo_s, hi_s = bootstrap_interval(small)
    lo_l, hi_l = bootstrap_interval(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 4
    assert bootstrap_interval(small) == (lo_s, hi_s)


def test_a_difference_is_significant_only_when_its_interval_excludes_zero():
    assert PairedDifference(0.1, 0.02, 0.18, 1, 10).significant
    assert not PairedDifference(0.1, -0.02, 0.18, 1, 10).significant
    assert PairedDifference(-0.1, -0.2, -0.01, 1, 10).significant
    assert not PairedDifference(math.nan, math.nan, math.nan, 0, 0).significant
