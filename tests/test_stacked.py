"""Seeds trained as one stacked model (engine/stacked.py) equal the same seeds trained one by one."""

import pytest
import torch

from benchmark.config import resolve
from benchmark.distributed import World
from benchmark.engine.run import run
from benchmark.engine.stacked import clip_per_seed, stack_seeds, train_stacked, why_not_stacked
from benchmark.engine.train import Checkpointing, Trainer, train
from benchmark.engine.trained import build, seeded
from benchmark.engine.weights import Workspace
from benchmark.progress import Reporter

CPU = torch.device("cpu")
SEEDS = (0, 1, 2)
# 20 steps of 16 with augmentation (each seed's own flips) and a clip that binds (LeNet-3's first
# gradient norm is about 4). At lr 1e-3 this tiny schedule is chaotic (loss spikes to 9): rounding
# differences of 1e-7 then grow to 1e-3 within 20 steps in separate runs alike, so lr is lower.
TWENTY_STEPS = ["train.samples=320", "train.batch_size=16", "train.epochs=1", "train.augment=true",
                "train.grad_clip=0.5", "train.lr=2e-4"]


def configs(method, *extra, seeds=SEEDS):
    return [resolve(method, "cmnist", seed=seed, overrides=[*TWENTY_STEPS, *extra]) for seed in seeds]


@pytest.fixture
def step_losses(monkeypatch):
    """Every step's loss per seed, as the training loop accounts it (both paths account the same way)."""
    seen: dict[int, list[float]] = {}
    account = Trainer.account

    def recording(self, batch, out, global_size, totals):
        seen.setdefault(self.state.generator.initial_seed(), []).append(float(out.loss.detach()))
        account(self, batch, out, global_size, totals)

    monkeypatch.setattr(Trainer, "account", recording)
    return seen


def built(config):
    with seeded(config.seed, CPU):
        return build(config, None)


@pytest.mark.parametrize("method, seeds", [("vanilla", SEEDS), ("weight_decay", SEEDS[:2])])  # its optimiser
def test_stacked_seeds_equal_separate_runs(method, seeds, step_losses):
    alone = {}
    for config in configs(method, seeds=seeds):
        dataset, m, model = built(config)
        result = train(model, m, dataset, config, CPU, Reporter(quiet=True), Checkpointing(share=False))
        alone[config.seed] = (model, result, step_losses.pop(config.seed))
    trainers = []
    for config in configs(method, seeds=seeds):
        dataset, m, model = built(config)
        trainers.append(Trainer(model, m, dataset, config, CPU, Reporter(quiet=True), Checkpointing(share=False),
                                World()))
    stacked = train_stacked(trainers, Reporter(quiet=True))
    for seed, trainer, result in zip(seeds, trainers, stacked):
        model, expected, losses = alone[seed]
        assert len(step_losses[seed]) == len(losses) == 20
        assert step_losses[seed] == pytest.approx(losses, abs=1e-5, rel=0)
        for (name, got), want in zip(trainer.model.state_dict().items(), model.state_dict().values()):
            # Adam divides by the root of the second moment: where a gradient is nearly zero,
            # rounding alone can move a single element by a fraction of lr (1e-3) per step
            difference = (got - want).norm() / want.norm()
            assert difference <= 1e-4 and (got - want).abs().max() <= 1e-3, (name, float(difference))
        (record,), (want,) = result.history, expected.history
        assert record.pop("stacked_seeds") == len(seeds)
        assert set(record) == set(want)
        for key in set(record) - {"duration_s"}:
            assert record[key] == pytest.approx(want[key], abs=1e-5), key
    # the seeds really differ: one stack is not one model three times
    assert len({round(losses[-1], 4) for _, _, losses in alone.values()}) == len(seeds)


def test_clipping_per_seed_is_clip_grad_norm_of_each_seed():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, 5, generator=g) * torch.tensor([0.01, 1.0, 10.0]).view(3, 1, 1),
             torch.randn(3, 7, generator=g)]
    expected = []
    for k in range(3):
        params = [torch.nn.Parameter(torch.zeros_like(t[k])) for t in grads]
        for p, t in zip(params, grads):
            p.grad = t[k].clone()
        torch.nn.utils.clip_grad_norm_(params, 2.0)
        expected.append([p.grad for p in params])
    clip_per_seed(grads, 2.0)
    for k in range(3):
        for got, want in zip(grads, expected[k]):
            torch.testing.assert_close(got[k], want)


def test_what_cannot_be_stacked_says_why():
    assert "not stackable" in why_not_stacked(configs("hsplid", "train.epochs=2"))
    mixed = [*configs("vanilla")[:2], resolve("vanilla", "cmnist", seed=2, overrides=["train.lr=1e-4"])]
    assert "more than the seed" in why_not_stacked(mixed)
    assert "fp32" in why_not_stacked(configs("vanilla", "train.precision=bf16"))
    assert why_not_stacked(configs("vanilla")) is None


def test_stacked_checkpoints_are_evaluated_by_each_seeds_run(tmp_path, monkeypatch):
    where = Workspace(tmp_path, device="cpu")
    small = ["train.samples=64", "train.batch_size=32", "train.epochs=1", "eval.samples=32",
             "eval.suites=accuracy"]
    note = stack_seeds("vanilla", "cmnist", profile="quick", seeds=(0, 1), overrides=small, workspace=where)
    assert note.startswith("vanilla: seeds 0, 1 trained as one stacked model (on a CPU that is slower")
    assert "nothing to stack" in stack_seeds("vanilla", "cmnist", profile="quick", seeds=(0, 1), overrides=small,
                                             workspace=where)

    def no_training(*args, **kwargs):
        raise AssertionError("a stacked seed's run must not train again")

    monkeypatch.setattr("benchmark.engine.weights.train", no_training)
    for seed in (0, 1):
        outcome = run("vanilla", "cmnist", seed=seed, overrides=small, workspace=where)
        rows = {(m.suite, m.metric): m.value for m in outcome.measurements if m.extra.get("epoch") in (None, 1)}
        assert rows[("training", "stacked_seeds")] == 2
        assert ("accuracy", "accuracy") in rows


def test_stacking_refuses_fresh_in_one_line(tmp_path, capsys):
    from benchmark.cli import main

    assert main(["run", "--method", "vanilla", "--seed", "0,1", "--stack-seeds", "--fresh", "--out",
                 str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--stack-seeds" in line and "--fresh" in line and not any(tmp_path.iterdir())


def test_a_sweep_with_stack_seeds_trains_each_configuration_once_as_a_stack(tmp_path, capsys):
    from benchmark.results.store import read_results
    from conftest import TINY_TRAINING_RUN, cli_in_process

    code, out, err = cli_in_process(capsys, "sweep", "--methods", "vanilla", "--seeds", "1,2", "--stack-seeds",
                                    "--workers", "1", *TINY_TRAINING_RUN, "--set", "train.epochs=1", "--out",
                                    tmp_path)
    assert code == 0, err
    frame, _ = read_results([tmp_path])
    stacked = frame[(frame.metric == "stacked_seeds")]
    assert sorted(stacked.seed) == [1, 2] and set(stacked.value) == {2.0}
    assert frame.groupby("run_key")["run_id"].nunique().max() == 1
