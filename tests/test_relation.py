"""Does attribution agreement predict background robustness? Rank correlations against scipy, the
bootstrap's coverage, synthetic results folders built to show (or not show) the relation, the page."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from benchmark.results.aggregate import tabulate
from benchmark.results.relation import relation_of
from benchmark.results.store import read_results, reported_rows
from benchmark.stats.correlation import ModelBootstrap, partial_spearman, spearman, split_half_difference
from benchmark_leaderboard.perf_cases import write_relation_folder
from benchmark_leaderboard.report import write_report
from conftest import cli_in_process


def test_spearman_matches_scipy_with_and_without_ties():
    rng = np.random.default_rng(0)
    for n in (5, 12, 40):
        x, y = rng.random(n), rng.random(n)
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        tied_x, tied_y = np.round(x * 3), np.round(y * 4)
        assert spearman(tied_x, tied_y) == pytest.approx(stats.spearmanr(tied_x, tied_y).statistic, abs=1e-12)
    assert np.isnan(spearman(np.ones(6), rng.random(6)))


def test_partial_spearman_equals_the_correlation_of_rank_residuals():
    """An independent route: regress the ranks of x and y on the ranks of z, correlate the residuals."""
    rng = np.random.default_rng(1)
    for _ in range(5):
        z = rng.random(25)
        x, y = z + rng.normal(0, 0.3, 25), z + rng.normal(0, 0.3, 25)
        rx, ry, rz = (stats.rankdata(v) for v in (x, y, z))
        design = np.column_stack([np.ones(25), rz])
        res_x = rx - design @ np.linalg.lstsq(design, rx, rcond=None)[0]
        res_y = ry - design @ np.linalg.lstsq(design, ry, rcond=None)[0]
        assert partial_spearman(x, y, z) == pytest.approx(stats.pearsonr(res_x, res_y).statistic, abs=1e-10)


def test_the_bootstrap_interval_covers_the_true_correlation_in_simulation():
    """Bivariate normal with Pearson 0.6: Spearman's population rho is (6 / pi) asin(0.3)."""
    truth = 6 / np.pi * np.arcsin(0.3)
    rng = np.random.default_rng(2)
    covered = 0
    for trial in range(200):
        xy = rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], size=40)
        boot = ModelBootstrap({"x": xy[:, 0], "y": xy[:, 1]}, seed=trial, draws=1000)
        _, low, high = boot.rho("x", "y")
        covered += low <= truth <= high
    assert covered >= 176, covered  # 88 % of 200 at 95 % nominal: the percentile bootstrap runs a little narrow


def test_split_halves_find_a_built_in_difference_and_none_where_there_is_none():
    rng = np.random.default_rng(3)
    score = rng.random((3, 200))
    linked = [(s, (rng.random(200) < 0.3 + 0.5 * (s > np.median(s))).astype(float)) for s in score]
    unlinked = [(s, (rng.random(200) < 0.5).astype(float)) for s in score]
    difference, low, high = split_half_difference(linked)
    assert 0.35 < difference < 0.65 and low > 0
    difference, low, high = split_half_difference(unlinked)
    assert low < 0 < high


def relation_for(folder):
    frame, problems = read_results([folder])
    assert not problems
    return relation_of(tabulate(reported_rows(frame)), None)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    made = {}
    for follows in ("agreement", "clean"):
        made[follows] = tmp_path_factory.mktemp(follows)
        write_relation_folder(made[follows], 20, seeds=2, follows=follows, seed=4)
    return made


def test_robustness_built_to_follow_agreement_shows_a_strong_relation_beyond_clean_accuracy(folders):
    relation = relation_for(folders["agreement"])
    assert relation.models == 40 and relation.configurations == 20 and not relation.reason
    best = relation.best
    assert best.metric == "relevance_mass_accuracy" and best.rho > 0.8 and best.low > 0.5
    assert best.partial > 0.8 and best.partial_low > 0.5
    assert relation.verdict.startswith("It holds here")
    assert len(relation.points) == 20 and all(p.x.seeds == 2 for p in relation.points)


def test_robustness_that_follows_only_clean_accuracy_has_a_partial_correlation_near_zero(folders):
    relation = relation_for(folders["clean"])
    best = relation.best
    assert best.rho > 0.5  # agreement and robustness move together ...
    assert abs(best.partial) < 0.4 and best.partial_low < 0 < best.partial_high  # ... only through clean accuracy
    assert not relation.verdict.startswith("It holds here")


def test_the_page_and_exports_show_the_relation_with_thirty_configurations_and_a_reason_with_one(tmp_path, capsys):
    many, one = tmp_path / "many", tmp_path / "one"
    many.mkdir()
    one.mkdir()
    write_relation_folder(many, 30, seeds=2)
    write_relation_folder(one, 1, seeds=3)
    for folder in (many, one):
        paths, problems = write_report([folder], folder / "lb.html", "now")
        assert not problems
    html = (many / "lb.html").read_text()
    assert "Does looking at the object predict robustness" in html and html.count("<circle") >= 30
    assert "It holds here" in html and "partial ρ given clean" in html
    assert "It holds here" in (many / "lb.md").read_text()
    rows = (many / "lb.relation.csv").read_text().splitlines()
    assert rows[0].startswith("dataset,profile,explainer,agreement") and len(rows) > 9
    single = (one / "lb.html").read_text()
    assert "no relation: it needs at least 5 configurations" in single and "relevance mass accuracy (x)" not in single
    code, out, _ = cli_in_process(capsys, "results", "--out", str(many), "--relation")
    assert code == 0 and "It holds here" in out and "partial rho given clean test" in out


def test_below_eight_models_rho_comes_with_an_exact_permutation_p_and_no_bootstrap_interval():
    rng = np.random.default_rng(2)
    x = rng.random(6)
    y, z = x + rng.random(6) * 0.5, rng.random(6)
    boot = ModelBootstrap({"x": x, "y": y, "z": z})
    exact = stats.permutation_test((x,), lambda a: stats.spearmanr(a, y).statistic, permutation_type="pairings",
                                   n_resamples=np.inf)
    assert boot.permutation_p("x", "y") == pytest.approx(exact.pvalue, rel=1e-12)
    partial = stats.permutation_test((x,), lambda a: partial_spearman(a, y, z), permutation_type="pairings",
                                     n_resamples=np.inf)
    assert boot.permutation_p("x", "y", "z") == pytest.approx(partial.pvalue, rel=1e-12)


def test_a_six_configuration_board_reports_permutation_p_values_adjusted_within_each_table(tmp_path):
    write_relation_folder(tmp_path, 6, seeds=2, follows="agreement", seed=4)
    relation = relation_for(tmp_path)
    assert relation.configurations == 6 and relation.ranking
    for c in relation.ranking + relation.correlations:
        assert np.isnan(c.low) and np.isnan(c.high) and np.isnan(c.partial_low)  # no coarse bootstrap below 8
        assert 1 / 720 <= c.p <= 1 and c.p_adjusted >= c.p and c.p_partial_adjusted >= c.p_partial
    family = [c.p for c in relation.ranking] + [c.p_partial for c in relation.ranking]
    smallest = min(family)
    best_adjusted = min([c.p_adjusted for c in relation.ranking] + [c.p_partial_adjusted for c in relation.ranking])
    assert best_adjusted == pytest.approx(min(1.0, len(family) * smallest))  # Holm's first step
