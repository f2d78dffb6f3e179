"""train.init_from: runs that start from a finished run's weights, in `benchmark run` and in sweeps."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

import benchmark.engine.weights as weights_module
from benchmark.checkpoint import load_checkpoint
from benchmark.config import resolve
from benchmark.engine.run import run
from benchmark.engine.start import start_run
from benchmark.engine.weights import Workspace
from conftest import BENCHMARK_CLI, cli_env, cli_in_process

FAST = ["train.samples=64", "train.epochs=1", "eval.samples=32", "eval.suites=accuracy"]
FROM_VANILLA = ["train.init_from=run:vanilla", "method.warmup_epochs=0"]


@pytest.fixture
def trainings(monkeypatch):
    """Each training of this process as (method, the encoder's weights when training began)."""
    calls: list[tuple[str, dict[str, torch.Tensor]]] = []
    real = weights_module.train

    def counted(model, method, dataset, config, *args, **kwargs):
        encoder = {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith("encoder.")}
        calls.append((config.method, encoder))
        return real(model, method, dataset, config, *args, **kwargs)

    monkeypatch.setattr(weights_module, "train", counted)
    return calls


def test_a_run_starts_from_exactly_the_weights_of_the_named_run(tmp_path, trainings):
    vanilla = run("vanilla", "cmnist", overrides=FAST, workspace=Workspace(tmp_path, device="cpu"))
    hsplid = run("hsplid", "cmnist", overrides=FAST + FROM_VANILLA, workspace=Workspace(tmp_path, device="cpu"))
    assert [m for m, _ in trainings] == ["vanilla", "hsplid"]  # the start was found, not trained again

    saved = load_checkpoint(vanilla.checkpoint_path)["model"]
    start = trainings[1][1]
    assert start and all(torch.equal(start[k], saved[k]) for k in start)  # bit-identical before the first step

    rows = pd.read_parquet(hsplid.results_path)
    assert {json.loads(e)["init_from"] for e in rows["extra"]} == {vanilla.config.key()}
    # The starting run's training key is part of the config key: another start is another run.
    assert hsplid.config.start == vanilla.config.training_key()
    assert hsplid.config.key() != resolve("hsplid", "cmnist", overrides=FAST + ["method.warmup_epochs=0"]).key()


def test_a_missing_start_is_trained_once_and_shared(tmp_path, trainings, capsys):
    first = run("hsplid", "cmnist", overrides=FAST + FROM_VANILLA, workspace=Workspace(tmp_path, device="cpu"))
    second = run("weight_decay", "cmnist", overrides=FAST + ["train.init_from=run:vanilla"],
                 workspace=Workspace(tmp_path, device="cpu"))
    assert [m for m, _ in trainings] == ["vanilla", "hsplid", "weight_decay"]
    start = start_run(first.config)
    assert start.train.init_from is None and start.eval.suites == () and start.train.samples == 64
    assert first.config.start == second.config.start == start.training_key()
    starting_rows = pd.read_parquet(tmp_path / f"vanilla__cmnist__quick__seed0__{start.key()}.parquet")
    assert set(starting_rows["suite"]) == {"training"} and starting_rows["extra"].str.contains('"role": "start"').all()
    # Starting runs are trained, not evaluated: summaries and the leaderboard leave them out.
    capsys.readouterr()
    code, out, _ = cli_in_process(capsys, "results", "--out", str(tmp_path))
    assert code == 0 and "hsplid" in out and "weight_decay" in out and "vanilla" not in out


def forged(source: Path, target: Path, edit) -> Path:
    """A copy of a real checkpoint with one thing changed (the exact on-disk format otherwise)."""
    payload = torch.load(source, weights_only=True)
    edit(payload)
    torch.save(payload, target)
    return target


def other_dataset(payload):
    payload["config"] = payload["config"].replace('"dataset":"cmnist"', '"dataset":"coco_animals"')


def other_encoder(payload):
    payload["config"] = payload["config"].replace('"encoder":"lenet3"', '"encoder":"resnet18"')


def other_classes(payload):
    for name in ("encoder.classifier.fc2.weight", "encoder.classifier.fc2.bias"):
        payload["model"][name] = payload["model"][name][:5]


@pytest.mark.parametrize("case, expected", [
    ("missing", "no checkpoint file"),
    ("dataset", "was trained on 'coco_animals', not 'cmnist'"),
    ("encoder", "holds a 'resnet18' encoder"),
    ("classes", "another number of classes"),
])
def test_a_missing_or_mismatched_start_is_refused_in_one_line_before_training(tmp_path, trainings, capsys, case,
                                                                             expected):
    source = run("vanilla", "cmnist", overrides=FAST,
                 workspace=Workspace(tmp_path / "source", device="cpu")).checkpoint_path
    trainings.clear()
    start = {"missing": lambda: tmp_path / "nope.pt",
             "dataset": lambda: forged(source, tmp_path / "d.pt", other_dataset),
             "encoder": lambda: forged(source, tmp_path / "e.pt", other_encoder),
             "classes": lambda: forged(source, tmp_path / "c.pt", other_classes)}[case]()
    out = tmp_path / "results"
    args = [f"--set={s}" for s in FAST + ["method.warmup_epochs=0", f"train.init_from={start}"]]
    code, stdout, stderr = cli_in_process(capsys, "run", "--method", "hsplid", "--out", str(out), *args)
    lines = stderr.strip().splitlines()
    assert code == 2 and expected in lines[-1] and "Traceback" not in stderr, stderr
    assert trainings == [] and not list(out.rglob("*.parquet")) and not list(out.rglob("*.pt"))


SWEEP = ["sweep", "--methods", "hsplid", "--vary", "method.lambda_s=0,0.1,0.5", "--seeds", "0,1", "--workers", "1",
         *[f"--set={s}" for s in FAST + FROM_VANILLA], "--set", "eval.suites=accuracy,robustness",
         "--set", "robustness.samples=16", "--set", "robustness.steps=1", "--quiet"]


@pytest.mark.slow
def test_a_sweep_trains_each_start_once_per_seed_and_reuses_it(tmp_path, trainings, capsys):
    code, stdout, stderr = cli_in_process(capsys, *SWEEP, "--out", str(tmp_path))
    assert code == 0, stderr
    methods = [m for m, _ in trainings]
    assert methods.count("vanilla") == 2 and methods.count("hsplid") == 6, methods
    assert "sweep: 10 run, 0 already done, 0 failed" in stdout  # 2 starts, 6 candidates, 2 finals

    trainings.clear()
    code, stdout, _ = cli_in_process(capsys, *SWEEP, "--out", str(tmp_path))
    assert code == 0 and trainings == [] and "sweep: 0 run, 10 already done" in stdout


@pytest.mark.slow
def test_a_sweep_killed_during_its_starting_run_resumes_it(tmp_path):
    slow_start = ["--methods", "hsplid", "--seeds", "0", "--workers", "1", "--checkpoint-every", "1",
                  "--set", "train.samples=96", "--set", "train.batch_size=16", "--set", "train.epochs=1",
                  "--set", "eval.samples=32", "--set", "eval.suites=accuracy,robustness",
                  *[f"--set={s}" for s in FROM_VANILLA],
                  "--set", "robustness.samples=16", "--set", "robustness.steps=1", "--out", str(tmp_path)]
    proc = subprocess.Popen([*BENCHMARK_CLI, "sweep", *slow_start], cwd=tmp_path, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    resume = None
    while proc.poll() is None and resume is None:
        resume = next((p for p in (tmp_path / "checkpoints").glob("vanilla__*.resume.pt")), None)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert resume is not None, "the sweep ended before its starting run wrote a resume checkpoint"
    assert not list((tmp_path / "checkpoints").glob("hsplid__*"))

    again = subprocess.run([*BENCHMARK_CLI, "sweep", *slow_start], cwd=tmp_path, env=cli_env(), capture_output=True,
                           text=True)
    assert again.returncode == 0, again.stderr
    assert re.search(r"done start vanilla cmnist seed 0 .*resumed at step \d", again.stderr), again.stderr
    assert len(list((tmp_path / "checkpoints").glob("vanilla__*.pt"))) == 1
    assert not list((tmp_path / "checkpoints").glob("*.resume.pt"))
