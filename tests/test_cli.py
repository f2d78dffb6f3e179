"""The command line end to end: run, results, list, and one-line errors with exit status 2."""

import subprocess

import pyarrow.parquet as pq
import pytest
import torch

from benchmark.store import SCHEMA, read_results
from conftest import BENCHMARK_CLI, TINY_RUN, cli_env


def cli(*args, cwd=None, **env):
    return subprocess.run([*BENCHMARK_CLI, *args], capture_output=True, text=True, cwd=cwd, env=cli_env(**env),
                          timeout=600)


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    proc = cli("run", "--out", str(out), "--seed", "0,1", *TINY_RUN)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_default_run_trains_the_default_methods_and_prints_a_summary(tiny_results):
    out, proc = tiny_results
    files = sorted(p.name for p in out.glob("*.parquet"))
    defaults = ("vanilla__cmnist__quick", "weight_decay__cmnist__quick", "hsplid__cmnist__quick")
    assert len(files) == 6 and all(f.startswith(defaults) for f in files)
    assert "vanilla" in proc.stdout and "weight_decay" in proc.stdout and "hsplid" in proc.stdout
    assert "clean test" in proc.stdout and "pgd right_digit 1" in proc.stdout and "pgd full 0.1" in proc.stdout
    assert len(list((out / "checkpoints").glob("*.pt"))) == 6


def test_written_files_match_the_documented_schema(tiny_results):
    out, _ = tiny_results
    for path in out.glob("*.parquet"):
        assert pq.read_schema(path).equals(SCHEMA)
    frame, problems = read_results([out])
    assert problems == []
    assert set(frame.seed) == {0, 1}
    robust = frame[frame.metric == "robust_accuracy"]
    assert set(zip(robust.attack, robust.region, robust.eps)) == {
        ("pgd", "right_digit", 1.0), ("pgd", "full", 0.1), ("noise", "right_digit", 1.0), ("noise", "full", 0.1)}
    assert (robust.n == 16).all() and (robust.area_fraction > 0).all()
    assert (robust[robust.attack == "pgd"].steps == 2).all()
    assert robust[robust.attack == "noise"].steps.isna().all()
    corrupted = frame[frame.metric == "corrupted_accuracy"]
    assert set(zip(corrupted.attack, corrupted.severity)) == {
        (c, s) for c in ("brightness", "defocus_blur", "snow") for s in (1, 3, 5)}
    assert (corrupted.region == "right_digit").all() and (corrupted.n == 16).all()
    assert frame.git_commit.notna().all() and frame.config.str.startswith("{").all()


def test_results_command_summarises_the_store(tiny_results):
    out, _ = tiny_results
    (out / "broken.parquet").write_bytes(b"not parquet")
    proc = cli("results", "--out", str(out))
    assert proc.returncode == 0
    assert "vanilla" in proc.stdout and "± " in proc.stdout  # two seeds give a spread
    assert "skipped" in proc.stderr and "broken.parquet" in proc.stderr
    (out / "broken.parquet").unlink()


def test_list_prints_registered_names():
    proc = cli("list", "methods")
    assert proc.returncode == 0 and "vanilla" in proc.stdout and "weight_decay" in proc.stdout
    assert "cmnist" in cli("list", "datasets").stdout


@pytest.mark.parametrize("args, expected", [
    (["run", "--method", "no-such", "--dataset", "cmnist"], "unknown method 'no-such'; did you mean"),
    (["run", "--dataset", "cmnst"], "did you mean cmnist"),
    (["run", "--set", "train.lrr=1"], "unknown key train.lrr; did you mean train.lr?"),
    (["run", "--set", "train.epochs=two"], "train.epochs expects an integer"),
    (["run", "--profile", "fast"], "unknown profile 'fast'"),
    (["run", "--seed", "x"], "--seed expects integers"),
    (["run", "--data-root", "/missing", "--set", "dataset.source=idx"], "no MNIST IDX files in '/missing'"),
    (["run", "--plugin", "/missing.py"], "plugin file '/missing.py' not found"),
    (["list", "widgets"], "invalid choice"),
    (["results", "--out", "/missing"], "does not exist"),
    (["perf", "no_case"], "unknown perf case"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, expected):
    proc = cli(*args, "--out", str(tmp_path)) if args[0] == "run" else cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_run_evaluates_a_saved_checkpoint_that_loads_weights_only(tiny_results):
    out, _ = tiny_results
    ckpt = next((out / "checkpoints").glob("vanilla*.pt"))
    assert "model" in torch.load(ckpt, weights_only=True)
