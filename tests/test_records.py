"""Per-sample records: every row is exactly what its records aggregate to, robust <= clean for
every sample and attack, records survive a rerun, an old (schema 1) results folder still reads
and renders, and uninformative maps score at chance."""

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from benchmark.config import resolve
from benchmark.engine.evaluate import evaluate
from benchmark.metrics import agreement_metrics, agreement_scores
from benchmark.results.records import read_records, records_path
from benchmark.results.store import COLUMNS, SCHEMA, read_results
from conftest import TINY_RUN, run_cli


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("records")
    proc = run_cli("run", "--method", "vanilla", "--out", out, "--quiet", *TINY_RUN, "--set", "train.epochs=1")
    assert proc.returncode == 0, proc.stderr
    return out


def test_every_row_is_the_mean_of_its_records_for_every_suite(tiny_run):
    results = next(tiny_run.glob("*.parquet"))
    rows = pq.read_table(results).to_pandas()
    records = read_records(results)
    assert records_path(results).is_file() and len(records) > 0
    with_records = set(records["row"])
    for suite in ("accuracy", "robustness", "corruptions", "attribution"):
        assert with_records & set(rows[rows.suite == suite].row), suite
    for row in rows[rows.row.isin(with_records)].itertuples():
        values = records[records.row == row.row]["value"].to_numpy(np.float64)
        assert row.n == len(values), row
        assert row.value == pytest.approx(values.mean(), rel=1e-6, abs=1e-7), (row.suite, row.metric)
        assert len(set(records[records.row == row.row]["sample"])) == len(values)
    proportions = rows[rows.metric.isin(["accuracy", "robust_accuracy", "corrupted_accuracy", "clean_accuracy"])]
    assert proportions.ci_low.notna().all() and (proportions.ci_low <= proportions.value).all()
    assert (proportions.value <= proportions.ci_high).all()
    assert rows[rows.suite == "training"].row.isin(with_records).sum() == 0


def test_robust_never_exceeds_clean_for_any_sample_or_attack(trained_lenet, cmnist):
    grid = ('{"pgd": {"right_digit": [1.0]}, "apgd-ce": {"full": [0.1]}, "autoattack-rand": {"full": [0.1]}, '
            '"square": {"right_digit": [0.5]}}')
    config = resolve("vanilla", "cmnist", overrides=[
        "eval.suites=robustness", "robustness.samples=48", f"robustness.grid={grid}", "robustness.steps=3",
        'robustness.options={"square": {"steps": 20}, "autoattack-rand": {"eot": 2}}'])
    rows = evaluate(trained_lenet, cmnist, config, torch.device("cpu")).measurements
    clean = next(r for r in rows if r.metric == "clean_accuracy").records
    clean_of = dict(zip(clean.sample, clean.value))
    attacked = [r for r in rows if r.metric in ("robust_accuracy", "baseline_accuracy")]
    assert {r.attack for r in attacked} == {"pgd", "apgd-ce", "autoattack-rand", "square", "noise", "worst_case"}
    for r in attacked:
        assert all(v <= clean_of[s] for s, v in zip(r.records.sample, r.records.value)), r.attack
        assert r.value <= next(c for c in rows if c.metric == "clean_accuracy").value
    assert all(r.metric == "baseline_accuracy" for r in attacked if r.attack == "noise")


def test_a_rerun_keeps_the_records_of_the_suites_it_reuses(tiny_run, tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    args = ["run", "--method", "vanilla", "--out", out, "--set", "train.samples=64", "--set", "train.epochs=1",
            "--set", "eval.samples=64", "--set", "eval.suites=accuracy"]
    proc = run_cli(*args, "--quiet")
    assert proc.returncode == 0
    results = next(out.glob("*.parquet"))
    before = read_records(results)
    again = run_cli(*args)
    assert "keeping the finished suites accuracy" in again.stderr
    pd.testing.assert_frame_equal(read_records(results), before)


def test_a_schema_1_results_folder_still_reads_and_renders(tiny_run, tmp_path):
    table = pq.read_table(next(tiny_run.glob("*.parquet")))
    old = [c for c in COLUMNS if c not in ("train_commit", "ci_low", "ci_high", "row")]
    legacy = table.select(old).set_column(0, "schema_version", pa.array([1] * len(table), pa.int32()))
    folder = tmp_path / "v1"
    folder.mkdir()
    pq.write_table(legacy, folder / "old.parquet")
    frame, problems = read_results([folder])
    assert problems == [] and len(frame) == len(table) and frame.train_commit.isna().all()
    assert list(frame.columns[: len(COLUMNS)]) == list(SCHEMA.names)
    proc = run_cli("report", "--results", folder, "--out", folder / "board.html")
    assert proc.returncode == 0, proc.stderr
    page = (folder / "board.html").read_text()
    assert "cmnist" in page and "vanilla" in page and "unknown (schema 1)" in page


def chance(name: str, area: float) -> float:
    """What a map that prefers no pixel scores, in expectation over the order of tied pixels."""
    return {"pixel_auroc": 0.5, "iou_at_mask_size": area / (2 - area)}.get(name, area)


@pytest.mark.parametrize("fill", [0.0, 0.7])
def test_constant_and_zero_maps_score_their_chance_values_on_every_agreement_metric(fill):
    s = torch.zeros(2, 40, dtype=torch.bool)
    s[0, :10], s[1, 5:35] = True, True  # areas 1/4 and 3/4
    a = torch.full((2, 40), fill, dtype=torch.float64)
    names = [m.name for m in agreement_metrics()]
    scores = agreement_scores(a, s, names, top_k=8)
    for name in names:
        for row, area in ((0, 0.25), (1, 0.75)):
            assert float(scores[name][row]) == pytest.approx(chance(name, area)), (name, fill, area)


def test_the_suite_counts_constant_maps_and_records_every_explainer_setting(tiny_run):
    frame, _ = read_results([tiny_run])
    pixel = frame[(frame.explainer == "pixel_mask") & (frame.metric == "relevance_mass_accuracy")]
    extra = pixel.extra.iloc[0]
    assert '"init": "start_grad"' in extra and '"iterations": 2' in extra and '"lambda_tv": 2.0' in extra
    assert '"constant_maps":' in extra
    assert not math.isnan(pixel.value.iloc[0])
