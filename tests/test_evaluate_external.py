"""Models trained elsewhere: `benchmark evaluate` and `evaluate_model()` on fixtures in the real layouts."""

from __future__ import annotations

import json
import shutil
import textwrap

import pandas as pd
import pytest
import torch
from test_coco_animals import write_coco_fixture
from test_in9 import write_in9_fixture
from torch import nn
from torchvision import models

import benchmark
from benchmark.engine.run import evaluate_checkpoint, run
from benchmark.engine.trained import restore
from benchmark.engine.weights import Workspace
from benchmark.errors import DataError
from conftest import cli_in_process

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# Two variants at 64 px: a ResNet-18 forward pass costs about 0.1 s per image at 112 px on a 2-core CPU.
IN9_LIGHT = ["dataset.labels=both", "dataset.image_size=64", "dataset.variants=mixed_same,mixed_rand",
             "eval.samples=9", "robustness.samples=4", "robustness.steps=1", "attribution.samples=2",
             "attribution.explainers=grad_cam,saliency", "attribution.faithfulness=false"]
CMNIST_LIGHT = ["eval.samples=32", "robustness.samples=16", "robustness.steps=2", "eval.suites=accuracy,robustness"]


def values(frame: pd.DataFrame) -> pd.Series:
    """Measured numbers by what they measure (timings left out)."""
    frame = frame[~frame["metric"].str.contains("duration") & frame["value"].notna()]
    index = ["suite", "metric", "eval_set", "attack", "region", "eps", "attack_seed", "explainer", "severity"]
    return frame.set_index(index)["value"].sort_index()


@pytest.fixture(scope="module")
def in9_without_imagenet(tmp_path_factory):
    """The IN-9 and CounterAnimal folders only: a model trained elsewhere needs no ImageNet copy."""
    root = write_in9_fixture(tmp_path_factory.mktemp("in9-eval"))
    shutil.rmtree(root / "imagenet")
    return root


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return write_coco_fixture(tmp_path_factory.mktemp("coco-eval"))


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(models.resnet18().state_dict(), path)
    return path


def test_a_torchvision_imagenet_model_is_scored_on_every_in9_protocol_and_counteranimal(
        in9_without_imagenet, resnet18_file, tmp_path, capsys):
    args = ["evaluate", "--model", "torchvision:resnet18", "--weights", resnet18_file, "--dataset", "in9",
            "--data-root", in9_without_imagenet, "--out", tmp_path / "cli", *[f"--set={s}" for s in IN9_LIGHT]]
    code, _, err = cli_in_process(capsys, *args)
    assert code == 0, err
    (path,) = (tmp_path / "cli").glob("*.parquet")
    frame = pd.read_parquet(path)
    assert path.name.startswith("resnet18__in9__quick__seed0__") and set(frame["method"]) == {"resnet18"}
    sets = set(frame.loc[frame["metric"] == "accuracy", "eval_set"])
    variants = ("mixed_same", "mixed_rand")
    assert {f"in9_{v}" for v in variants} | {f"in9_{v}_9way" for v in variants} <= sets
    assert {"counteranimal_common", "counteranimal_counter", "test"} <= sets and "val" not in sets
    derived = set(frame.loc[frame["suite"] == "derived", "metric"])
    assert derived == {"bg_gap", "bg_gap_9way", "counter_drop"}
    robust = frame[frame["metric"] == "robust_accuracy"]
    assert set(robust["region"]) >= {"background"}  # masked attacks on IN-9 original with its fg masks
    assert set(frame["train_commit"]) == {"external"}
    assert {json.loads(e)["external"] for e in frame["extra"]} == {f"torchvision:resnet18 + {resnet18_file}"}
    config = json.loads(frame["config"].iloc[0])
    assert config["model"]["options"]["sha256"] and config["model"]["encoder"] == "external"

    # The same weights through the Python API, normalisation declared: the same numbers.
    model = models.resnet18()
    model.load_state_dict(torch.load(resnet18_file))
    outcome = benchmark.evaluate_model(model, "in9", name="resnet18", preprocessing=IMAGENET,
                                       overrides=IN9_LIGHT,
                                       workspace=Workspace(tmp_path / "api", in9_without_imagenet, device="cpu"))
    pd.testing.assert_series_equal(values(pd.read_parquet(outcome.results_path)), values(frame))


def test_a_model_of_your_own_on_coco_through_a_factory_file(coco_root, tmp_path, capsys):
    from benchmark.registry import DATASETS

    classes = DATASETS.get("coco_animals")(None, coco_root).info.num_classes
    factory = tmp_path / "my_models.py"
    factory.write_text(textwrap.dedent(f"""
        import torch
        from torchvision import models

        def small_resnet():
            torch.manual_seed(1)
            return models.resnet18(num_classes={classes})
    """))
    light = ["eval.samples=8", "robustness.samples=4", "robustness.steps=1", "eval.suites=accuracy,robustness"]
    code, out, err = cli_in_process(capsys, "evaluate", "--model", f"{factory}:small_resnet", "--name", "mine",
                                    "--dataset", "coco_animals", "--data-root", coco_root, "--out", tmp_path / "o",
                                    "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", *[f"--set={s}" for s in light])
    assert code == 0, err
    (path,) = (tmp_path / "o").glob("mine__coco_animals__*.parquet")
    frame = pd.read_parquet(path)
    assert (frame["metric"] == "robust_accuracy").any() and set(frame["method"]) == {"mine"}


class SelfNormalising(nn.Module):
    """A small CNN that normalises its own input, as many released models do."""

    def __init__(self, mean: float, std: float, normalise: bool):
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                                 nn.Linear(128, 10))
        self.register_buffer("mean", torch.tensor([mean]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor([std]).view(1, -1, 1, 1))
        self.normalise = normalise

    def forward(self, x):
        return self.net((x - self.mean) / self.std if self.normalise else x)


def test_normalising_inside_or_declaring_it_gives_the_same_numbers(tmp_path):
    inside = benchmark.evaluate_model(SelfNormalising(0.13, 0.3, True), "cmnist", name="inside",
                                      overrides=CMNIST_LIGHT, workspace=Workspace(tmp_path, device="cpu"))
    declared = benchmark.evaluate_model(SelfNormalising(0.13, 0.3, False), "cmnist", name="declared",
                                        preprocessing=((0.13,), (0.3,)), overrides=CMNIST_LIGHT,
                                        workspace=Workspace(tmp_path, device="cpu"))
    a, b = values(pd.read_parquet(inside.results_path)), values(pd.read_parquet(declared.results_path))
    assert len(a) > 5
    pd.testing.assert_series_equal(a, b, check_exact=True)


def test_an_external_model_scores_exactly_as_the_same_weights_as_a_project_checkpoint(tmp_path):
    trained = run("vanilla", "cmnist", overrides=["train.samples=64", "train.epochs=1", *CMNIST_LIGHT],
                  workspace=Workspace(tmp_path / "trained", device="cpu"))
    _, _, _, model, _ = restore(trained.checkpoint_path, device="cpu")  # normalises inside, like any released model
    external = benchmark.evaluate_model(model, "cmnist", name="same-weights", overrides=CMNIST_LIGHT,
                                        workspace=Workspace(tmp_path / "external", device="cpu"))
    again = evaluate_checkpoint(trained.checkpoint_path, suites=["accuracy", "robustness"],
                                overrides=[s for s in CMNIST_LIGHT if not s.startswith("eval.suites")],
                                workspace=Workspace(tmp_path / "checkpoint", device="cpu"))
    a = values(pd.read_parquet(external.results_path))
    b = values(pd.read_parquet(again.results_path))
    b = b[[key in a.index for key in b.index]]  # the checkpoint's evaluation also scores the val split
    assert len(a) == len(b) > 5
    pd.testing.assert_series_equal(a, b, check_exact=True)


def test_a_model_with_the_wrong_number_of_outputs_is_refused_before_any_evaluation(tmp_path, capsys):
    factory = tmp_path / "wrong.py"
    factory.write_text("from torch import nn\n\ndef seven():\n    return nn.Sequential(nn.Flatten(), "
                       "nn.Linear(64 * 64, 7))\n")
    code, _, err = cli_in_process(capsys, "evaluate", "--model", f"{factory}:seven", "--out", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "the model gives 7 outputs per image; this dataset scores 10 classes" in err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("*.parquet"))
    with pytest.raises(DataError, match="gives 7 outputs"):
        benchmark.evaluate_model(nn.Sequential(nn.Flatten(), nn.Linear(64 * 64, 7)), "cmnist", name="seven",
                                 workspace=Workspace(tmp_path / "o"))


@pytest.mark.parametrize("args, expected", [
    (["--model", "torchvision:resnet18", "--weights", "/nope.pt", "--dataset", "cmnist"],
     "weights file '/nope.pt' not found; torchvision's weights for resnet18 are at https://download.pytorch.org"),
    (["--model", "torchvision:resnet1000"], "torchvision has no model 'resnet1000'"),
    (["--model", "resnet18"], "model spec 'resnet18': expected torchvision:NAME"),
    (["--model", "no_such_module:build"], "model module 'no_such_module' cannot be imported"),
    (["--model", "torchvision:resnet18", "--mean", "0.5"], "--mean and --std go together"),
    (["--model", "torchvision:resnet18", "--set", "train.lr=1"], "an external model is evaluated as given"),
    (["--model", "torchvision:resnet18", "--name", "vanilla"], "is a training method's name"),
    (["--model", "torchvision:resnet18", "--name", "a b"], "model name 'a b'"),
])
def test_bad_evaluate_input_is_one_line_exit_2(tmp_path, capsys, args, expected):
    code, _, err = cli_in_process(capsys, "evaluate", *args, "--out", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "o").exists()


def test_external_rows_sit_beside_trained_methods_in_results_and_on_the_leaderboard(tmp_path, capsys):
    run("vanilla", "cmnist", overrides=["train.samples=64", "train.epochs=1", *CMNIST_LIGHT],
        workspace=Workspace(tmp_path, device="cpu"))
    benchmark.evaluate_model(SelfNormalising(0.13, 0.3, True), "cmnist", name="theirs", overrides=CMNIST_LIGHT,
                             workspace=Workspace(tmp_path, device="cpu"))
    code, out, err = cli_in_process(capsys, "results", "--out", str(tmp_path))
    assert code == 0 and "theirs" in out and "vanilla" in out, err
    code, _, err = cli_in_process(capsys, "report", "--results", str(tmp_path), "--out", str(tmp_path / "lb.html"))
    assert code == 0, err
    html = (tmp_path / "lb.html").read_text()
    assert "theirs" in html and "vanilla" in html and "class=ext" in html
    assert "theirs (external)" in (tmp_path / "lb.md").read_text()
    rows = pd.read_csv(tmp_path / "lb.csv")
    assert rows.loc[rows["method"] == "theirs", "external"].str.startswith("python:").all()
