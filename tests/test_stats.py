"""Intervals and paired tests against closed forms, scipy and a coverage simulation."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from benchmark.stats.intervals import (
    PairedDifference,
    bootstrap_interval,
    crossed_means,
    holm,
    holm_adjusted,
    mcnemar_exact,
    paired_bootstrap,
    seed_sample_interval,
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


@pytest.mark.parametrize("b, c", [(0, 0), (3, 10), (10, 3), (0, 7), (25, 18), (40, 61), (500, 560), (5_000, 5_200),
                                  (3_500, 3_700), (0, 7_000)])
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


def test_one_seed_of_ten_thousand_outcomes_gives_an_interval_and_the_exact_mcnemar_p():
    rng = np.random.default_rng(3)
    u = rng.random(10_000)
    method, reference = (u < 0.62).astype(float), (rng.random(10_000) < 0.55).astype(float)
    d = paired_bootstrap([method], [reference])
    b, c = int(((method == 1) & (reference == 0)).sum()), int(((method == 0) & (reference == 1)).sum())
    assert b + c > 4_000
    assert d.p_mcnemar == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9) and d.p == d.p_mcnemar
    assert d.low < d.difference < d.high and d.high - d.low < 0.04


def test_holm_adjusts_step_down_and_keeps_the_order_monotone():
    # sorted: 0.005 x 4, 0.01 x 3, 0.03 x 2, 0.04 x 1 -> 0.02, 0.03, 0.06, 0.06 (running maximum)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.9, 0.2]) == pytest.approx([0.9, 0.4])
    assert holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])  # 2 x 0.5 = 1, never above 1, never below an earlier one
    adjusted = holm([0.02, math.nan, 0.02])  # nan neither counts nor changes
    assert adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    first, second = holm_adjusted([PairedDifference(0.1, 0.01, 0.2, 1, 10, p=0.03),
                                   PairedDifference(0.1, 0.01, 0.2, 1, 10, p=0.02)])
    assert first.p_adjusted == pytest.approx(0.04) and second.p_adjusted == pytest.approx(0.04)
    assert first.excludes_zero and first.significant  # 0.04 < 0.05
    three = holm_adjusted([PairedDifference(0.1, 0.01, 0.2, 1, 10, p=0.03)] * 3)
    assert all(d.excludes_zero and not d.significant for d in three)  # 0.09: the interval alone would star it


def test_crossed_draws_have_the_spread_of_a_literal_resampling_loop():
    """The pattern-count shortcut against the definition: draw seeds, then one set of sample ids
    shared by the drawn seeds, and take the mean."""
    rng = np.random.default_rng(5)
    values = (rng.random((3, 120)) < rng.uniform(0.2, 0.9, size=120)).astype(float)
    fast = crossed_means(values, np.random.default_rng(0), draws=4000)
    literal_rng = np.random.default_rng(1)
    literal = [values[literal_rng.integers(0, 3, 3)][:, literal_rng.integers(0, 120, 120)].mean()
               for _ in range(4000)]
    assert fast.mean() == pytest.approx(values.mean(), abs=0.003)
    assert fast.std() == pytest.approx(np.std(literal), rel=0.08)


def shared_sample_trial(rng, seeds, n=256, seed_sd=0.05, effect_sd=0.05):
    """Outcomes of a reference and a method on one fixed set of n test samples, every seed on the
    same samples: per-sample difficulty (sd 1.2 on the probit scale) and a per-sample effect of
    the method (sd 1.0) are shared by all seeds; each training seed shifts the accuracy (seed_sd)
    and the effect (effect_sd), and its outcomes are drawn anew."""
    from scipy.stats import norm

    difficulty, effect = rng.normal(0, 1.2, n), rng.normal(0, 1.0, n)
    method, reference = [], []
    for _ in range(seeds):
        shift, own = rng.normal(0, seed_sd), rng.normal(0, effect_sd)
        u = rng.random(n)
        reference.append((u < norm.cdf(0.3 + difficulty + shift)).astype(float))
        method.append((u < norm.cdf(0.45 + difficulty + shift + effect + own)).astype(float))
    return np.array(method), np.array(reference)


def truths(seed_sd, effect_sd):
    from scipy.stats import norm

    cell = norm.cdf(0.3 / math.sqrt(1 + 1.2**2 + seed_sd**2))
    return cell, norm.cdf(0.45 / math.sqrt(1 + 1.2**2 + seed_sd**2 + 1.0 + effect_sd**2)) - cell


@pytest.mark.parametrize("seeds, seed_sd, effect_sd, width_limit", [
    (3, 0.05, 0.05, 1.6), (5, 0.05, 0.05, 1.5), (5, 0.3, 0.2, 1.5)])
def test_intervals_on_shared_samples_cover_in_93_percent_of_400_trials_without_being_much_wider(
        seeds, seed_sd, effect_sd, width_limit):
    """Cells and differences over seeds on one shared test set cover the population mean (over
    seeds and samples) in at least 93 % of 400 trials at 95 % nominal, and are at most
    `width_limit` times as wide as the oracle interval (the estimator's own sd across the trials,
    times 2 x 1.96). Three seeds get 1.6: the Student-t quantile of 2 degrees of freedom is 4.30
    against 1.96, so no interval that estimates the seeds' spread from three of them reaches a
    known-variance oracle's width. The t-interval over seeds alone misses the shared sample
    error and covers far less at five seeds (the defect this procedure replaces)."""
    rng = np.random.default_rng(11)
    cell_truth, diff_truth = truths(seed_sd, effect_sd)
    covered = {"cell": 0, "difference": 0, "t only": 0}
    widths, estimates = {"cell": [], "difference": []}, {"cell": [], "difference": []}
    for trial in range(400):
        method, reference = shared_sample_trial(rng, seeds, seed_sd=seed_sd, effect_sd=effect_sd)
        cell = seed_sample_interval(reference, seed=trial)
        d = paired_bootstrap(list(method), list(reference), seed=trial)
        t_only = t_interval(reference.mean(axis=1))
        covered["cell"] += cell.low <= cell_truth <= cell.high
        covered["difference"] += d.low <= diff_truth <= d.high
        covered["t only"] += t_only.low <= cell_truth <= t_only.high
        for name, (low, high, mean) in (("cell", (cell.low, cell.high, cell.mean)),
                                        ("difference", (d.low, d.high, d.difference))):
            widths[name].append(high - low)
            estimates[name].append(mean)
    assert covered["cell"] >= 372 and covered["difference"] >= 372, covered  # 93 % of 400
    for name in widths:
        oracle = 2 * 1.959964 * np.std(estimates[name])
        assert np.mean(widths[name]) <= width_limit * oracle, (name, np.mean(widths[name]) / oracle)
    if seeds == 5 and seed_sd < 0.1:
        assert covered["t only"] < 0.9 * 400, covered
