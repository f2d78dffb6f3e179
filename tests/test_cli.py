"""The command line end to end: run, results, list, and one-line errors with exit status 2."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from benchmark.results.records import read_records
from benchmark.results.store import SCHEMA, read_results
from benchmark.suites.attribution import BUILTIN_EXPLAINERS as ALL_EXPLAINERS
from benchmark.suites.attribution import default_metrics
from conftest import BENCHMARK_CLI, TINY_RUN, cli_env, cli_in_process, run_cli


def cli(*args, cwd=None, **env):
    return subprocess.run([*BENCHMARK_CLI, *args], capture_output=True, text=True, cwd=cwd, env=cli_env(**env),
                          timeout=600)


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    """The default methods with seed 0, and vanilla again with seed 1 (a spread over seeds)."""
    out = tmp_path_factory.mktemp("results")
    proc = run_cli("run", "--out", str(out), "--seed", "0", *TINY_RUN)
    assert proc.returncode == 0, proc.stderr
    again = run_cli("run", "--method", "vanilla", "--out", str(out), "--seed", "1", *TINY_RUN)
    assert again.returncode == 0, again.stderr
    return out, proc


def test_default_run_trains_the_default_methods_and_prints_a_summary(tiny_results):
    out, proc = tiny_results
    files = sorted(p.name for p in out.glob("*.parquet"))
    defaults = ("vanilla__cmnist__quick", "weight_decay__cmnist__quick", "hsplid__cmnist__quick")
    assert len(files) == 4 and all(f.startswith(defaults) for f in files)
    assert "vanilla" in proc.stdout and "weight_decay" in proc.stdout and "hsplid" in proc.stdout
    assert "clean test" in proc.stdout and "pgd right_digit 1" in proc.stdout and "pgd full 0.1" in proc.stdout
    assert len(list((out / "checkpoints").glob("*.pt"))) == 4


def test_written_files_match_the_documented_schema(tiny_results):
    out, _ = tiny_results
    for path in out.glob("*.parquet"):
        assert pq.read_schema(path).equals(SCHEMA)
    frame, problems = read_results([out])
    assert problems == []
    assert set(frame.seed) == {0, 1}
    robust = frame[frame.metric.isin(["robust_accuracy", "baseline_accuracy"])]
    assert set(zip(robust.attack, robust.region, robust.eps)) == {
        (a, "right_digit", 1.0) for a in ("pgd", "noise", "worst_case")} | {
        (a, "full", 0.1) for a in ("pgd", "noise", "worst_case")}
    assert set(robust[robust.attack == "noise"].metric) == {"baseline_accuracy"}
    assert (frame[frame.metric == "accuracy"].ci_low.notna()).all()
    assert (robust.n == 16).all() and (robust.area_fraction > 0).all()
    assert (robust[robust.attack == "pgd"].steps == 2).all()
    assert robust[robust.attack.isin(["noise", "worst_case"])].steps.isna().all()
    corrupted = frame[frame.metric == "corrupted_accuracy"]
    assert set(zip(corrupted.attack, corrupted.severity)) == {
        (c, s) for c in ("brightness", "defocus_blur", "snow") for s in (1, 3, 5)}
    assert (corrupted.region == "right_digit").all() and (corrupted.n == 16).all()
    assert frame.git_commit.notna().all() and frame.config.str.startswith("{").all()
    attribution = frame[frame.suite == "attribution"]
    scored = set(zip(attribution.explainer, attribution.metric))
    assert {(e, m) for e in ALL_EXPLAINERS for m in default_metrics()} <= scored
    assert {(e, m) for e in ALL_EXPLAINERS for m in ("deletion_auc", "insertion_auc")} <= scored
    assert {("pixel_mask", "cp_pixel"), ("pixel_mask", "retained_probability")} <= scored
    assert (attribution[attribution.metric.isin(list(default_metrics()))].n == 8).all()
    for stem in {Path(f).stem for f in frame.source_file}:
        for name in ALL_EXPLAINERS:
            assert (out / "artifacts" / stem / "attribution" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_results_command_summarises_the_store(tiny_results):
    out, _ = tiny_results
    (out / "broken.parquet").write_bytes(b"not parquet")
    proc = cli("results", "--out", str(out))
    assert proc.returncode == 0
    assert "vanilla" in proc.stdout and " [" in proc.stdout  # every number with its interval
    assert "difference to vanilla on the same samples" in proc.stdout
    assert "skipped" in proc.stderr and "broken.parquet" in proc.stderr
    (out / "broken.parquet").unlink()


def test_list_prints_registered_names(capsys):
    code, out, _ = cli_in_process(capsys, "list", "methods")
    assert code == 0 and "vanilla" in out and "weight_decay" in out
    assert "cmnist" in cli_in_process(capsys, "list", "datasets")[1]


def test_bad_input_from_a_fresh_process_is_one_line_exit_2():
    proc = cli("run", "--method", "no-such")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_run_evaluates_a_saved_checkpoint_that_loads_weights_only(tiny_results):
    out, _ = tiny_results
    ckpt = next((out / "checkpoints").glob("vanilla*.pt"))
    assert "model" in torch.load(ckpt, weights_only=True)


def test_attack_command_reproduces_the_run_and_adds_attacks(tiny_results, tmp_path):
    out, _ = tiny_results
    ckpt = next((out / "checkpoints").glob("vanilla*seed0*.pt"))
    proc = cli("attack", "--checkpoint", str(ckpt), "--attack", "pgd", "--attack", "apgd-ce", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "apgd-ce right_digit 1" in proc.stdout and "clean test (attacked samples)" in proc.stdout
    assert list((out / "checkpoints").glob("*.pt")) and not list(tmp_path.glob("checkpoints/*"))
    frame, problems = read_results([tmp_path])
    trained, _ = read_results([next(out.glob(ckpt.stem + ".parquet"))])
    assert problems == [] and set(frame.suite) == {"robustness"} and frame.method.unique().tolist() == ["vanilla"]
    robust = frame[frame.metric.isin(["robust_accuracy", "baseline_accuracy"])]
    assert set(zip(robust.attack, robust.region)) == {(a, r) for a in ("pgd", "apgd-ce", "noise", "worst_case")
                                                      for r in ("right_digit", "full")}
    assert (frame.extra.str.contains(trained.run_key.iloc[0])).all()  # tied to the training run
    # The saved grid, samples and seeds give back the training run's own numbers.
    key = ["attack", "region", "eps", "attack_seed"]
    before = trained[trained.metric.isin(["robust_accuracy", "baseline_accuracy"])].set_index(key).value
    after = robust[robust.attack.isin(["pgd", "noise"])].set_index(key).value
    assert after.sort_index().equals(before.sort_index().drop("worst_case", level="attack"))


def test_attack_writes_worst_case_rows_no_higher_than_any_attack_on_the_same_samples(tiny_results, tmp_path):
    out, _ = tiny_results
    ckpt = next((out / "checkpoints").glob("vanilla*seed0*.pt"))
    proc = cli("attack", "--checkpoint", str(ckpt), "--attack", "pgd,noise", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    frame, _ = read_results([tmp_path])
    records = read_records(frame.source_file.iloc[0])
    robust = frame[frame.metric.isin(["robust_accuracy", "baseline_accuracy"])]
    for (region, eps, seed), rows in robust.groupby(["region", "eps", "attack_seed"]):
        worst = rows[rows.attack == "worst_case"]
        assert len(worst) == 1 and json.loads(worst.extra.iloc[0])["over"] == ["noise", "pgd"]
        per_sample = {a: records[records.row == r].set_index("sample").value for a, r in zip(rows.attack, rows.row)}
        literal = np.minimum(per_sample["pgd"], per_sample["noise"])  # robust only if it survives both
        assert per_sample["worst_case"].sort_index().equals(literal.sort_index())
        assert worst.value.iloc[0] == pytest.approx(literal.mean())
        assert worst.value.iloc[0] <= rows[rows.attack != "worst_case"].value.min()
    assert "worst_case right_digit 1" in cli("results", "--out", str(tmp_path)).stdout




def test_the_default_run_checks_every_default_explainer_and_the_report_shows_the_checks(tiny_results, tmp_path):
    out, _ = tiny_results
    frame, _ = read_results([out])
    for metric in ("model_randomisation_similarity", "random_logit_similarity"):
        assert set(frame[frame.metric == metric].explainer) == set(ALL_EXPLAINERS), metric
    for metric in ("road", "road_morf_accuracy", "road_lerf_accuracy", "focus"):
        assert set(frame[frame.metric == metric].explainer) == set(ALL_EXPLAINERS), metric
    for metric in ("worst_group_accuracy", "average_group_accuracy", "core_accuracy", "spurious_accuracy"):
        assert (frame.metric == metric).any(), metric
    proc = cli("report", "--results", str(out), "--out", str(tmp_path / "lb.html"))
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "lb.html").read_text()
    assert "Sanity checks: do the maps depend on the model?" in html and "similarity after full randomisation" in html
