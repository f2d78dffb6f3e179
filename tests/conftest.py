"""Shared fixtures: the embedded C-MNIST and a LeNet-3 trained briefly on it."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from benchmark.cli.runtime import tune_allocator

tune_allocator()
REPO = Path(__file__).resolve().parents[1]
BENCHMARK_CLI = [sys.executable, "-m", "benchmark"]


@pytest.fixture(scope="session")
def cmnist():
    from benchmark_datasets.cmnist import CMNIST

    return CMNIST()


@pytest.fixture(scope="session")
def trained_lenet(cmnist):
    """LeNet-3 after one pass over 1,600 C-MNIST pairs (about 85% clean accuracy), in eval mode."""
    from benchmark.data.loader import iterate
    from benchmark.models import Classifier, create_encoder

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = Classifier(create_encoder("lenet3", cmnist.info), cmnist.info.mean, cmnist.info.std)
        opt = torch.optim.Adam(model.parameters(), lr=7e-4)
        split = cmnist.split("train")
        gen = torch.Generator().manual_seed(0)
        for batch in iterate(split, 32, shuffle=True, generator=gen, indices=torch.arange(1600)):
            loss = torch.nn.functional.cross_entropy(model(batch.x), batch.y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def test_batch(cmnist):
    from benchmark.data.loader import iterate

    return next(iterate(cmnist.split("test"), 128))


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **extra}
    env.pop("BENCHMARK_DATA_ROOT", None)
    return env


# Settings that make a full `benchmark run` take seconds: few training and evaluation samples.
TINY_RUN = [
    "--set", "train.samples=64", "--set", "eval.samples=64",
    "--set", "robustness.samples=16", "--set", "robustness.steps=2", "--set", "corruptions.samples=16",
    "--set", "attribution.samples=8", "--set", "attribution.faithfulness_steps=2", "--set", "sanity.samples=2",
    "--set", "attribution.road_samples=2", "--set", "group_accuracy.samples=64",
    "--set", 'attribution.options={"integrated_gradients": {"n_steps": 2}, "smoothgrad": {"samples": 2}, '
             '"occlusion": {"window": 32, "stride": 32}, "pixel_mask": {"iterations": 2, "noise_draws": 1}}',
]
# The same without the corruption and attribution suites, for tests about training and plugins.
TINY_TRAINING_RUN = [
    "--set", "train.samples=64", "--set", "eval.samples=64", "--set", "eval.suites=accuracy,robustness",
    "--set", "robustness.samples=16", "--set", "robustness.steps=2",
]


@dataclass
class Completed:
    """What `run_cli` returns: the shape of subprocess.CompletedProcess that tests read."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> Completed:
    """`benchmark ARGS` in this process with stdout and stderr captured (no interpreter start-up).
    Only for commands that import no plugin file, which would stay registered here."""
    from benchmark.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(map(str, args)))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
    return Completed(code, out.getvalue(), err.getvalue())


def cli_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """`benchmark ARGS` in this process (no interpreter start-up): exit status, stdout, stderr.
    Only for commands that import no plugin file, which would stay registered here."""
    from benchmark.cli import main

    try:
        code = main(list(map(str, args)))
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err
