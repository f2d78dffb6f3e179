"""The training loop and the method contract: hooks, counts, optimiser settings, checkpoints."""

import json

import pandas as pd
import torch

from benchmark.checkpoint import load_checkpoint
from benchmark.config import resolve
from benchmark.engine.run import run
from benchmark.engine.train import train
from benchmark.engine.trained import build, restore
from benchmark.engine.weights import Workspace
from benchmark.method import Method, StepOutput
from benchmark.progress import Reporter
from benchmark_methods.weight_decay import WeightDecay, WeightDecayParams


class Recording(Method):
    """Records every hook call."""

    name = "recording"

    def __init__(self, params, info):
        super().__init__(params, info)
        self.calls = []

    def on_train_start(self, model, state):
        self.calls.append(("start", state.samples_seen, sum(len(b) for b in state.clean_batches(0.5))))

    def training_step(self, model, batch, state):
        out = super().training_step(model, batch, state)
        return StepOutput({**out.losses, "extra": 0.0 * out.losses["ce"]}, out.logits)

    def on_step_end(self, model, batch, output, state):
        self.calls.append(("step", state.step, state.samples_seen))

    def on_epoch_end(self, model, state):
        self.calls.append(("epoch", state.epoch))
        return {"custom": 1.5}


def test_hooks_fire_in_order_with_sample_counts(cmnist):
    config = resolve("vanilla", "cmnist", overrides=["train.samples=100", "train.batch_size=32", "train.epochs=2"])
    method = Recording(None, cmnist.info)
    _, _, model = build(config, None)
    result = train(model, method, cmnist, config, torch.device("cpu"), Reporter(quiet=True))
    assert method.calls[0] == ("start", 0, 50)  # half of the 100 clean training samples
    steps = [c for c in method.calls if c[0] == "step"]
    assert [s[2] for s in steps] == [32, 64, 96, 100, 132, 164, 196, 200]
    assert [c for c in method.calls if c[0] == "epoch"] == [("epoch", 0), ("epoch", 1)]
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.history[0]["custom"] == 1.5 and "loss_extra" in result.history[0]


def test_weight_decay_reaches_the_optimiser(cmnist):
    config = resolve("weight_decay", "cmnist")
    _, method, model = build(config, None)
    assert isinstance(method, WeightDecay)
    opt = method.optimizer(model, config.train)
    assert opt.param_groups[0]["weight_decay"] == config.method_params.weight_decay == 1e-3
    assert WeightDecayParams().weight_decay == 1e-4


def test_same_seed_trains_the_same_model():
    overrides = ["train.samples=64", "eval.suites=accuracy", "eval.samples=32"]
    states = []
    for _ in range(2):
        config = resolve("vanilla", "cmnist", seed=5, overrides=overrides)
        torch.manual_seed(5)
        ds, method, model = build(config, None)
        train(model, method, ds, config, torch.device("cpu"), Reporter(quiet=True))
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_run_writes_a_checkpoint_that_loads_with_weights_only(tmp_path, test_batch):
    outcome = run("vanilla", "cmnist", overrides=["train.samples=64", "eval.samples=32", "robustness.samples=8",
                                                  "robustness.steps=1", "eval.suites=accuracy,robustness"],
                  workspace=Workspace(tmp_path, device="cpu"))
    raw = torch.load(outcome.checkpoint_path, weights_only=True)
    assert set(raw) >= {"format", "config", "model", "method_state", "history"}
    payload = load_checkpoint(outcome.checkpoint_path)
    assert payload["config"]["run"]["method"] == "vanilla"
    config, ds, method, model, device = restore(outcome.checkpoint_path, device="cpu")
    assert config.to_json() == outcome.config.to_json()
    fresh_ds, fresh_method, fresh_model = build(config, None)
    fresh_model.load_state_dict(raw["model"])
    model.eval(), fresh_model.eval()
    with torch.no_grad():
        assert torch.equal(model(test_batch.x), fresh_model(test_batch.x))
    metrics = {(m.suite, m.metric) for m in outcome.measurements}
    assert {("training", "loss"), ("accuracy", "accuracy"), ("robustness", "robust_accuracy")} <= metrics


def test_a_version_bump_retrains_while_other_code_changes_reuse_the_checkpoint(tmp_path, monkeypatch):
    """The config key holds the method's version, not the commit: a new commit (say, a docs change)
    reuses the finished checkpoint and its rows still name the commit that trained it; bumping
    `Method.version` makes a new key, so the weights are trained again."""
    import benchmark.engine.weights as weights_module
    from benchmark import provenance
    from benchmark_methods.vanilla import Vanilla

    trainings = []
    real_train = weights_module.train
    monkeypatch.setattr(weights_module, "train", lambda *a, **k: trainings.append(1) or real_train(*a, **k))
    overrides = ["train.samples=64", "eval.samples=32", "eval.suites=accuracy"]

    def run_at(commit: str):
        monkeypatch.setattr(provenance, "git_commit", lambda: commit)
        outcome = run("vanilla", "cmnist", overrides=overrides, workspace=Workspace(tmp_path, device="cpu"))
        frame = pd.read_parquet(outcome.results_path)
        return outcome, set(frame.train_commit), set(frame.git_commit)

    first, trained_by, evaluated_by = run_at("aaa")
    assert len(trainings) == 1 and trained_by == evaluated_by == {"aaa"}

    again, trained_by, evaluated_by = run_at("bbb")
    assert again.config.key() == first.config.key() and len(trainings) == 1  # reused
    assert trained_by == {"aaa"} and evaluated_by == {"bbb"}

    monkeypatch.setattr(Vanilla, "version", Vanilla.version + 1)
    bumped, trained_by, evaluated_by = run_at("ccc")
    assert bumped.config.key() != first.config.key() and len(trainings) == 2  # trained again
    assert bumped.config.versions["method"] == Vanilla.version
    assert trained_by == evaluated_by == {"ccc"}
    assert bumped.checkpoint_path != first.checkpoint_path and first.checkpoint_path.is_file()


def _trained(method: str, out, steps: list[int], monkeypatch) -> tuple[dict, dict]:
    """Run `method` into `out`; its weights and its rows (value by what the row measures), the
    optimisation steps it took appended to `steps`."""
    import benchmark.engine.train as train_module

    taken = []
    real_step = train_module.Trainer.step
    monkeypatch.setattr(train_module.Trainer, "step", lambda self, *a: taken.append(1) or real_step(self, *a))
    overrides = ["train.samples=96", "train.batch_size=32", "eval.samples=32", "eval.suites=accuracy"]
    outcome = run(method, "cmnist", overrides=overrides, workspace=Workspace(out_dir=out, device="cpu"))
    monkeypatch.setattr(train_module.Trainer, "step", real_step)
    steps.append(len(taken))
    weights = torch.load(outcome.checkpoint_path, weights_only=True)["model"]
    rows = {(m.suite, m.metric, m.eval_set, json.dumps(m.extra, sort_keys=True)): m.value
            for m in outcome.measurements if not m.metric.endswith("duration_s")}  # times differ, nothing else
    return weights, rows


def test_vanilla_and_h_splid_share_their_first_epoch_with_identical_numbers(tmp_path, monkeypatch):
    """H-SPLID's quick warm-up epoch is vanilla's first epoch: whichever runs second continues
    from the first one's state and trains one epoch instead of two, with the same weights and rows
    as when it runs alone (here: first in its folder)."""
    steps: list[int] = []
    vanilla_alone, vanilla_alone_rows = _trained("vanilla", tmp_path / "a", steps, monkeypatch)
    hsplid_shared, hsplid_shared_rows = _trained("hsplid", tmp_path / "a", steps, monkeypatch)
    hsplid_alone, hsplid_alone_rows = _trained("hsplid", tmp_path / "b", steps, monkeypatch)
    vanilla_shared, vanilla_shared_rows = _trained("vanilla", tmp_path / "b", steps, monkeypatch)
    assert steps == [6, 3, 6, 3]  # 96 samples in batches of 32, two epochs; the second run of a folder: one
    assert len(list((tmp_path / "a" / "checkpoints" / "shared").glob("first-epoch-*.pt"))) == 1
    for alone, shared in ((hsplid_alone, hsplid_shared), (vanilla_alone, vanilla_shared)):
        assert alone.keys() == shared.keys() and all(torch.equal(alone[k], shared[k]) for k in alone)
    assert hsplid_alone_rows == hsplid_shared_rows and vanilla_alone_rows == vanilla_shared_rows
    assert ("training", "loss", "train", '{"epoch": 1}') in hsplid_shared_rows
