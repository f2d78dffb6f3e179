"""A third-party method plugin, installed from its own package through the entry-point group."""

import subprocess
import sys
import textwrap

import pytest

from benchmark.results.store import read_results
from conftest import TINY_TRAINING_RUN, cli_env

PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "label-smoothing-plugin"
version = "0.1"

[project.entry-points."benchmark.methods"]
label_smoothing = "label_smoothing_plugin:LabelSmoothing"
"""

PLUGIN_MODULE = '''
from dataclasses import dataclass

import torch.nn.functional as F

from benchmark.method import Method, StepOutput


@dataclass
class Params:
    smoothing: float = 0.1


class LabelSmoothing(Method):
    """Cross-entropy against smoothed labels (a third-party example)."""

    Params = Params

    @classmethod
    def defaults(cls, dataset, profile):
        return {"method": {"smoothing": 0.2}} if dataset == "cmnist" else {}

    def training_step(self, model, batch, state):
        logits = model(batch.x)
        loss = F.cross_entropy(logits, batch.y, label_smoothing=self.params.smoothing)
        return StepOutput({"smoothed_ce": loss}, logits)
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    pkg = root / "src"
    pkg.mkdir()
    (pkg / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (pkg / "label_smoothing_plugin.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(pkg)], check=True, capture_output=True, text=True)
    return site


def test_installed_plugin_is_listed_with_its_origin(plugin_site, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmark", "list", "methods"], cwd=tmp_path,
                          capture_output=True, text=True, env=cli_env(PYTHONPATH=str(plugin_site)))
    assert proc.returncode == 0
    assert "label_smoothing" in proc.stdout and "label-smoothing-plugin" in proc.stdout


def test_installed_plugin_runs_with_its_defaults_and_overrides(plugin_site, tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", "--method", "label_smoothing", "--out", str(out),
                           "--set", "method.smoothing=0.3", *TINY_TRAINING_RUN],
                          cwd=tmp_path, capture_output=True, text=True, env=cli_env(PYTHONPATH=str(plugin_site)))
    assert proc.returncode == 0, proc.stderr
    frame, _ = read_results([out])
    assert set(frame.method) == {"label_smoothing"}
    assert '"smoothing":0.3' in frame.config.iloc[0]
    assert "loss_smoothed_ce" in set(frame.metric)


def test_a_method_file_added_to_a_second_checkout_is_found_when_running_from_it(tmp_path):
    """The editable install maps the plugin folders to the first checkout; a copy run from its own
    folder must still see its own methods/ (issue 29)."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    copy = tmp_path / "copy"
    for folder in ("benchmark", "methods", "datasets"):
        shutil.copytree(root / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "methods" / "copy_only.py").write_text(
        '"""A method only this checkout has."""\n\nfrom benchmark.method import Method\n'
        'from benchmark.registry import METHODS\n\n\n@METHODS.register("copy_only")\n'
        'class CopyOnly(Method[None]):\n    """Cross-entropy, found only in the copy."""\n')
    listing = subprocess.run([sys.executable, "-m", "benchmark", "list", "methods"], cwd=copy, capture_output=True,
                             text=True, timeout=120, env=cli_env(COLUMNS="200"))
    assert listing.returncode == 0, listing.stderr
    assert "copy_only" in listing.stdout and "vanilla" in listing.stdout
    here = subprocess.run([sys.executable, "-m", "benchmark", "list", "methods"], cwd=root, capture_output=True,
                          text=True, timeout=120, env=cli_env(COLUMNS="200"))
    assert "copy_only" not in here.stdout and "vanilla" in here.stdout
