"""A run never loses its training: a failing suite is recorded and the others are written, a rerun
measures only what is missing, and bad settings are refused before anything is trained."""

import math
import subprocess

import pandas as pd
import pytest
import torch
from test_isic2017 import write_isic_fixture

from benchmark.config import resolve
from benchmark.engine.evaluate import evaluate
from benchmark.registry import SUITES
from benchmark.results.store import FAILED, read_results
from conftest import BENCHMARK_CLI, TINY_RUN, cli_env, run_cli

FLAKY = '''
import os
from benchmark.attribution import Explainer
from benchmark.registry import EXPLAINERS

@EXPLAINERS.register("flaky")
class Flaky(Explainer):
    """Fails while the file named by FLAKY_MARKER exists."""

    def attribute(self, x, target, generator):
        if os.path.exists(os.environ["FLAKY_MARKER"]):
            raise RuntimeError("flaky explainer failed\\nwith a second line")
        return x.abs()
'''


def test_a_failing_suite_is_recorded_and_the_next_suites_still_run(cmnist, trained_lenet, monkeypatch):
    config = resolve("vanilla", "cmnist", overrides=["eval.suites=accuracy,attribution,robustness", "eval.samples=16",
                                                     "robustness.samples=8", "robustness.steps=1",
                                                     "attribution.explainers=saliency", "attribution.samples=4"])

    def broken(self, ctx, *args):
        raise ValueError("no maps today")

    monkeypatch.setattr(SUITES.get("attribution"), "_explain", broken)  # one piece of the suite fails
    result = evaluate(trained_lenet, cmnist, config, torch.device("cpu"))
    assert result.failures == {"attribution": "ValueError: no maps today"}
    assert list(result.by_suite) == ["accuracy", "attribution", "robustness"]
    failed = result.by_suite["attribution"]
    assert len(failed) == 1 and failed[0].metric == FAILED and math.isnan(failed[0].value)
    assert any(m.metric == "robust_accuracy" for m in result.by_suite["robustness"])


@pytest.fixture
def flaky_plugin(tmp_path):
    plugin = tmp_path / "flaky.py"
    plugin.write_text(FLAKY)
    marker = tmp_path / "fail-now"
    marker.touch()
    return plugin, marker


@pytest.mark.slow
def test_a_failed_suite_keeps_the_rest_and_a_rerun_measures_only_what_is_missing(tmp_path, flaky_plugin):
    plugin, marker = flaky_plugin
    out = tmp_path / "out"
    args = [*BENCHMARK_CLI, "run", "--method", "vanilla", "--plugin", str(plugin), "--out", str(out), *TINY_RUN,
            "--set", "train.epochs=1", "--set", "attribution.explainers=saliency,flaky",
            "--set", "sanity.explainers=saliency"]
    env = cli_env(FLAKY_MARKER=str(marker))
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 1, first.stderr
    errors = [line for line in first.stderr.splitlines() if line.startswith("benchmark: error:")]
    assert len(errors) == 1 and "suite attribution failed: RuntimeError: flaky explainer failed with a second line" \
        in errors[0] and "Traceback" not in first.stderr
    frame, _ = read_results([out])
    assert set(frame.suite) >= {"training", "accuracy", "robustness", "corruptions", "attribution"}
    failed = frame[frame.metric == FAILED]
    assert list(failed.suite) == ["attribution"] and "flaky explainer failed" in failed.extra.iloc[0]
    assert (out / "checkpoints").is_dir() and len(list((out / "logs").glob("*.txt"))) == 1
    assert len(list(out.glob(".*.pieces.parquet"))) == 1  # the saliency piece, kept
    kept = frame[frame.suite.isin(["accuracy", "robustness", "corruptions"])][["suite", "metric", "value"]]

    marker.unlink()
    second = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "reusing the trained weights" in second.stderr
    assert "keeping the finished suites accuracy, group_accuracy, robustness, corruptions" in second.stderr
    assert "train vanilla" not in second.stderr and "pgd right_digit" not in second.stderr
    assert "attribution: keeping 2 of its 3 pieces measured before" in second.stderr  # saliency and its preparation
    assert not list(out.glob(".*.pieces.parquet"))
    again, _ = read_results([out])
    assert not (again.metric == FAILED).any() and len(set(again.run_id)) == 1
    assert {"saliency", "flaky"} <= set(again[again.suite == "attribution"].explainer)
    pd.testing.assert_frame_equal(kept.reset_index(drop=True),
                                  again[again.suite.isin(["accuracy", "robustness", "corruptions"])][
                                      ["suite", "metric", "value"]].reset_index(drop=True))
    third = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    kept = "keeping the finished suites accuracy, group_accuracy, robustness, corruptions, attribution"
    assert third.returncode == 0 and kept in third.stderr


def test_unknown_split_names_are_refused_before_training(tmp_path):
    out = tmp_path / "out"
    for setting, message in (("eval.splits=val,tset", "eval.splits: dataset 'cmnist' has no split 'tset'"),
                             ("robustness.eval_set=train2", "robustness.eval_set: dataset 'cmnist' has no split"),
                             ("attribution.eval_set=dev", "attribution.eval_set: dataset 'cmnist' has no split")):
        proc = run_cli("run", "--method", "vanilla", "--out", out, "--set", setting)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
        assert not out.exists()


def test_an_attack_that_needs_more_classes_is_refused_before_training(tmp_path):
    root = write_isic_fixture(tmp_path / "isic")
    out = tmp_path / "out"
    proc = run_cli("run", "--method", "vanilla", "--dataset", "isic2017", "--data-root", root, "--out", out,
                   "--set", "dataset.image_size=32", "--set", 'robustness.grid={"apgd-t": {"background": [0.01]}}')
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "attack 'apgd-t' needs at least 4 classes; dataset 'isic2017' has 3" in proc.stderr
    assert not out.exists()


def test_an_interrupted_suite_keeps_its_finished_pieces_and_a_rerun_measures_only_the_rest(
        cmnist, trained_lenet, tmp_path, monkeypatch):
    """Ctrl-C in the middle of the robustness suite (a paper-profile AutoAttack can take many
    minutes): the attack settings measured before it are kept beside the results, the rerun
    measures only the others, and the rows equal those of an evaluation that was never stopped."""
    from benchmark.engine.run import execute
    from benchmark.engine.weights import AsGiven, Workspace
    from benchmark.results.layout import RunFiles

    config = resolve("vanilla", "cmnist", overrides=["eval.suites=accuracy,robustness", "eval.samples=16",
                                                     "robustness.samples=8", "robustness.steps=1"])
    robustness = SUITES.get("robustness")
    measure = robustness._measure
    calls = []

    def counted(self, ctx, attack, region, eps, seed, *args):
        calls.append((attack, region, eps, seed))
        if stop_at and len(calls) == stop_at:
            raise KeyboardInterrupt
        return measure(self, ctx, attack, region, eps, seed, *args)

    monkeypatch.setattr(robustness, "_measure", counted)
    stop_at = 0
    whole = execute(config, AsGiven(trained_lenet), workspace=Workspace(tmp_path / "whole", device="cpu"))
    settings = list(calls)
    assert len(settings) >= 4
    calls.clear()
    stop_at = 3
    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        execute(config, AsGiven(trained_lenet), workspace=Workspace(out, device="cpu"))
    files = RunFiles.of(config, out)
    first, _ = read_results([files.results])
    assert list(first[first.metric == FAILED].suite) == ["robustness"] and files.pieces.is_file()
    calls.clear()
    stop_at = 0
    again = execute(config, AsGiven(trained_lenet), workspace=Workspace(out, device="cpu"))
    assert calls == settings[2:]  # the two attack settings measured before Ctrl-C are not measured again
    assert not files.pieces.exists() and not again.failures

    def rows(outcome):
        return [(m.suite, m.metric, m.attack, m.region, m.eps, m.attack_seed, m.flags, m.value, m.n)
                for m in outcome.measurements]

    assert rows(again) == rows(whole)
    final, _ = read_results([files.results])
    assert not (final.metric == FAILED).any() and len(final) == len(whole.measurements)


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_a_run_stopped_during_evaluation_keeps_what_it_measured(tmp_path, stop):
    """A scheduler pre-empting the job (SIGTERM, handled as Ctrl-C) or the kernel's OOM killer
    (SIGKILL, no handler runs) after the first attack setting: the results file already holds the
    finished suites, the unfinished ones are `failed` rows, the finished attack settings wait in
    the pieces file, and the rerun measures only the rest."""
    import signal

    out = tmp_path / "out"
    # 40 PGD steps: the attack settings after the first take seconds, so the signal lands inside the
    # suite even when this process reads the line late on a busy machine
    args = [*BENCHMARK_CLI, "run", "--method", "vanilla", "--out", str(out), *TINY_RUN, "--set", "train.epochs=1",
            "--set", "robustness.steps=40"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=cli_env())
    lines = []
    for line in proc.stderr:  # type: ignore[union-attr]
        lines.append(line)
        if "pgd right_digit" in line:  # the first attack setting finished
            proc.send_signal(getattr(signal, stop))
            break
    rest = proc.stderr.read()  # type: ignore[union-attr]
    status = proc.wait(timeout=300)
    assert status == (130 if stop == "SIGTERM" else -signal.SIGKILL), "".join(lines) + rest
    frame, _ = read_results([out])
    failed = frame[frame.metric == FAILED].set_index("suite").extra
    assert set(failed.index) == {"robustness", "corruptions", "attribution", "sanity"}, "".join(lines) + rest
    assert ("interrupted" if stop == "SIGTERM" else "not run") in failed["robustness"]
    assert all("not run" in failed[s] for s in ("corruptions", "attribution", "sanity"))
    assert {"training", "accuracy"} <= set(frame.suite) and len(list(out.glob(".*.pieces.parquet"))) == 1
    again = subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=600)
    assert again.returncode == 0 and "reusing the trained weights" in again.stderr, again.stderr
    assert "keeping the finished suites accuracy" in again.stderr and "robustness: keeping" in again.stderr
    final, _ = read_results([out])
    assert not (final.metric == FAILED).any() and not list(out.glob(".*.pieces.parquet"))
    assert {"accuracy", "robustness", "corruptions", "attribution"} <= set(final.suite)
