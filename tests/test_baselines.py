"""The paper's baselines and the mask-supervised methods: penalties by hand, contracts, quick runs."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import benchmark.losses.hsic as hsic
import benchmark.losses.subspaces as subspaces
from benchmark.config import resolve
from benchmark.data.split import Batch
from benchmark.engine.run import run
from benchmark.engine.trained import build
from benchmark.engine.weights import Workspace
from benchmark.losses.penalties import group_lasso_activations, group_lasso_weights, l1_activations, l1_weights
from benchmark.method import TrainState
from benchmark.registry import METHODS
from benchmark.sweep.plan import grid_points
from benchmark_methods import hbar as hbar_module
from benchmark_methods import hsplid as hsplid_module
from benchmark_methods.hbar import hbar_terms
from benchmark_methods.rrr import right_reasons_penalty

# method -> the loss term it adds to the cross-entropy
BASELINES = {"l1_weights": "l1_weights", "l1_activations": "l1_activations",
             "group_lasso_weights": "group_lasso_weights", "group_lasso_activations": "group_lasso_activations",
             "hbar": "hsic_x_hidden", "rrr": "right_reasons", "actdiff": "activation_difference"}


def tiny_net() -> nn.Sequential:
    """conv 1->2 (3x3), BatchNorm, linear 8->2, with fixed weights for hand computations."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.arange(18.0).view(2, 1, 3, 3) - 9)  # -9..8
        net[0].bias.fill_(100.0)
        net[1].weight.fill_(50.0)
        net[1].bias.fill_(-50.0)
        net[3].weight.copy_(torch.tensor([[3.0, 4, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]]))
        net[3].bias.fill_(7.0)
    return net


def test_weight_penalties_match_a_hand_computation_and_skip_biases_and_batchnorm():
    net = tiny_net()
    conv_l1 = sum(abs(v) for v in range(-9, 9))  # 81
    assert float(l1_weights(net).detach()) == conv_l1 + 7 + 8
    filters = [math.sqrt(sum(v * v for v in range(-9, 0))), math.sqrt(sum(v * v for v in range(0, 9)))]
    rows = [5.0, math.sqrt(8.0)]
    assert float(group_lasso_weights(net).detach()) == pytest.approx(sum(filters) + sum(rows), rel=1e-6)


def test_activation_penalties_match_a_hand_computation():
    a = torch.tensor([[3.0, -4.0], [0.0, 0.0], [-1.0, 0.0]])
    assert float(l1_activations(a)) == 8.0
    assert float(group_lasso_activations(a)) == 6.0  # 5 + 0 + 1, summed over the batch


class LeftHalfClassifier(nn.Module):
    """Reads only the left half of the image: its input gradients vanish on the right half."""

    def __init__(self, height=4, width=6):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(height * (width // 2), 5), nn.Tanh(), nn.Linear(5, 3))
        self.width = width

    def forward(self, x):
        return self.body(x[..., : self.width // 2].flatten(1))


def rrr_slow(model, x, mask):
    """Per sample: gradient of sum_k log p_k, squared, outside the mask, summed; then the mean."""
    values = []
    for i in range(len(x)):
        xi = x[i : i + 1].clone().requires_grad_(True)
        grad = torch.autograd.grad(F.log_softmax(model(xi), 1).sum(), xi)[0]
        values.append(float(((1 - mask[i : i + 1]) * grad).pow(2).sum()))
    return sum(values) / len(values)


def test_rrr_penalty_is_zero_when_gradients_vanish_outside_the_mask_and_positive_otherwise():
    model = LeftHalfClassifier().double()
    x = torch.rand(5, 1, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    left = torch.zeros(5, 1, 4, 6, dtype=torch.float64)
    left[..., :3] = 1
    for mask, positive in ((left, False), (1 - left, True), (torch.zeros_like(left), True)):
        leaf = x.clone().requires_grad_(True)
        penalty = right_reasons_penalty(model(leaf), leaf, mask)
        value = float(penalty.detach())
        assert (value > 0) == positive
        assert value == pytest.approx(rrr_slow(model, x, mask), rel=1e-10, abs=1e-300)
        if positive:  # the double backward reaches the weights
            grads = torch.autograd.grad(penalty, list(model.parameters()))
            assert any(float(g.abs().sum()) > 0 for g in grads)


def test_hbar_terms_use_the_shared_nocco_estimator():
    # One implementation: both methods call benchmark.losses.hsic, neither defines its own
    # (H-SPLID through its terms in benchmark.losses.subspaces).
    assert hsplid_module.hsic_terms is subspaces.hsic_terms
    for name in ("normalised_operator", "nhsic_from_operators", "gaussian_kernel", "label_kernel"):
        assert getattr(hbar_module, name) is getattr(hsic, name)
        assert getattr(subspaces, name) is getattr(hsic, name)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 6, 6, generator=g, dtype=torch.float64)
    y = torch.arange(16) % 3
    hidden = [torch.randn(16, 4, 3, 3, generator=g, dtype=torch.float64), torch.randn(16, 7, generator=g,
                                                                                      dtype=torch.float64)]
    with_x, with_y = hbar_terms(x, y, hidden, 3, sigma=5.0)
    expected_x = sum(hsic.nhsic(hsic.gaussian_kernel(x, 5.0), hsic.gaussian_kernel(h, 5.0)) for h in hidden)
    expected_y = sum(hsic.nhsic(hsic.label_kernel(y, 3, x.dtype), hsic.gaussian_kernel(h, 5.0)) for h in hidden)
    torch.testing.assert_close(with_x, expected_x)
    torch.testing.assert_close(with_y, expected_y)


def step_terms(name, batch, **params):
    config = resolve(name, "cmnist", overrides={"method": params})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ds, method, model = build(config, None)
    state = TrainState(torch.device("cpu"), 1, 64, 64, ds.split("train"))
    return method, model, method.training_step(model.train(), batch, state)


def test_penalised_methods_add_strength_times_penalty_to_cross_entropy(test_batch):
    batch = Batch(test_batch.x[:32], test_batch.y[:32], test_batch.mask[:32], test_batch.index[:32])
    for name, on_weights in (("l1_weights", True), ("group_lasso_weights", True), ("l1_activations", False),
                             ("group_lasso_activations", False)):
        method, model, out = step_terms(name, batch, strength=0.25)
        penalty = getattr(__import__("benchmark.losses.penalties", fromlist=[name]), name)
        value = penalty(model) if on_weights else penalty(model.embed(batch.x))
        torch.testing.assert_close(out.losses[name], 0.25 * value)
        torch.testing.assert_close(out.losses["ce"], F.cross_entropy(out.logits, batch.y))


def test_hbar_regularises_every_declared_hidden_layer(test_batch):
    batch = Batch(test_batch.x[:32], test_batch.y[:32], test_batch.mask[:32], test_batch.index[:32])
    method, model, out = step_terms("hbar", batch, lambda_x=0.5, lambda_y=2.0)
    assert model.hidden_layers == ("encoder.features.pool1", "encoder.features.pool2", "encoder.features.fc1")
    modules = dict(model.named_modules())
    hidden, x = [], model.normalize(batch.x)
    for layer in model.encoder.features:  # the same forward, by hand
        x = layer(x)
        if any(modules[n] is layer for n in model.hidden_layers):
            hidden.append(x)
    with_x, with_y = hbar_terms(batch.x, batch.y, hidden, 10, sigma=5.0)
    torch.testing.assert_close(out.losses["hsic_x_hidden"], 0.5 * with_x)
    torch.testing.assert_close(out.losses["hsic_y_hidden"], -2.0 * with_y)


def test_actdiff_is_zero_for_images_that_are_all_object_and_positive_otherwise(test_batch):
    batch = Batch(test_batch.x[:16], test_batch.y[:16], test_batch.mask[:16], test_batch.index[:16])
    _, _, out = step_terms("actdiff", batch, strength=1.0)
    assert float(out.losses["activation_difference"].detach()) > 0
    whole = Batch(batch.x * batch.mask, batch.y, batch.mask, batch.index)  # nothing outside the object
    _, _, out = step_terms("actdiff", whole, strength=1.0)
    assert float(out.losses["activation_difference"].detach()) == 0.0


def test_named_grids_are_valid_overrides():
    for entry in METHODS.entries():
        for grid_name, grid in entry.obj.grids.items():
            assert grid, f"{entry.name}: grid {grid_name} is empty"
            points = grid_points(entry.name, grid_name)
            assert len(points) >= 2 and len(set(points)) == len(points), f"{entry.name}: grid {grid_name}"
            for point in points:
                assert all(key.startswith("method.") for key, _ in point)
                resolve(entry.name, "cmnist", overrides=[f"{key}={value}" for key, value in point])


@pytest.mark.parametrize("name", BASELINES)
def test_every_baseline_trains_on_cmnist_and_records_its_hyperparameters(name, tmp_path):
    outcome = run(name, "cmnist", overrides=["train.samples=128", "eval.samples=64", "eval.suites=accuracy,robustness",
                                             "robustness.samples=16", "robustness.steps=2"],
                  workspace=Workspace(tmp_path, device="cpu"))
    assert outcome.results_path.exists()
    metrics = {(m.suite, m.metric) for m in outcome.measurements}
    assert ("accuracy", "accuracy") in metrics and ("robustness", "robust_accuracy") in metrics
    config = json.loads(outcome.config.to_json())
    defaults = METHODS.get(name).defaults("cmnist", "quick").get("method", {})
    assert config["method"] and all(config["method"][k] == v for k, v in defaults.items())
    terms = {m.metric: m.value for m in outcome.measurements if m.suite == "training"}
    assert "loss_ce" in terms and f"loss_{BASELINES[name]}" in terms
