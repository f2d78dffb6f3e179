"""H-SPLID: the closed-form mask, its schedule, the loss terms, checkpoints and diagnostics."""

import pytest
import torch
import torch.nn.functional as F

from benchmark.config import resolve
from benchmark.data.split import first_of_shuffle
from benchmark.engine.run import run
from benchmark.engine.train import train
from benchmark.engine.trained import build, restore
from benchmark.engine.weights import Workspace
from benchmark.errors import ConfigError
from benchmark.losses.hsic import gaussian_kernel, label_kernel, nhsic, nhsic_from_operators, normalised_operator
from benchmark.losses.subspaces import (
    ScatterSums,
    beta_paper,
    beta_reference,
    class_compactness,
    global_compactness,
    has_split,
    salient_mask,
    scatter,
    update_centres,
)
from benchmark.method import TrainState
from benchmark.progress import Reporter
from benchmark_methods.hsplid import CMNIST_TERMS, HSplid, HSplidParams

F64 = torch.float64


def synthetic_scatter():
    g = torch.Generator().manual_seed(0)
    return torch.rand(50, generator=g, dtype=F64) * 3, torch.rand(50, generator=g, dtype=F64) * 3


def test_reference_beta_is_its_formula_and_minimises_its_objective():
    a, b = synthetic_scatter()
    beta = beta_reference(a, b)
    torch.testing.assert_close(beta, b**2 / (a**2 + b**2))
    grid = torch.linspace(0, 1, 20001, dtype=F64).unsqueeze(1)
    objective = grid**2 * a**2 + (1 - grid) ** 2 * b**2  # (grid, dims)
    assert ((beta**2 * a**2 + (1 - beta) ** 2 * b**2) <= objective.min(0).values + 1e-12).all()
    torch.testing.assert_close(grid[objective.argmin(0), 0], beta, atol=1e-4, rtol=0)


def test_paper_beta_is_its_formula_and_minimises_its_objective():
    a, b = synthetic_scatter()
    beta = beta_paper(a, b, 0.2, 0.1)
    torch.testing.assert_close(beta, 0.1 * b / (0.2 * a + 0.1 * b))
    grid = torch.linspace(0, 1, 20001, dtype=F64).unsqueeze(1)
    objective = 0.2 * grid**2 * a + 0.1 * (1 - grid) ** 2 * b
    torch.testing.assert_close(grid[objective.argmin(0), 0], beta, atol=1e-4, rtol=0)


def test_beta_of_a_dead_dimension_is_tiny_not_nan():
    zero = torch.zeros(3)
    assert beta_reference(zero, zero).tolist() == pytest.approx([1e-12] * 3)
    assert torch.isfinite(beta_paper(zero, zero, 0.1, 0.1)).all()


def test_scatter_is_within_class_and_global_sum_of_squares():
    z = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    y = torch.tensor([0, 0, 1])
    centres, c0 = torch.tensor([[2.0, 1.0], [4.0, 4.0]]), torch.tensor([3.0, 3.0])
    a, b = scatter(z, y, centres, c0)
    assert a.tolist() == [1 + 1 + 1, 1 + 1 + 1]
    assert b.tolist() == [4 + 0 + 4, 9 + 1 + 4]


def test_streaming_sums_give_the_exact_scatter_around_class_means():
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(300, 6, generator=g, dtype=F64) * 4 + 2, torch.randint(0, 5, (300,), generator=g)
    sums = ScatterSums.empty(5, 6, "cpu")
    for start in range(0, 300, 64):
        sums.add(z[start:start + 64], y[start:start + 64])
    means = torch.stack([z[y == k].mean(0) for k in range(5)])
    torch.testing.assert_close(sums.class_means(), means)
    c0 = z.mean(0) / 2
    for got, want in zip(sums.scatter(c0), scatter(z, y, means, c0)):
        torch.testing.assert_close(got, want)


def test_threshold_is_inclusive_and_split_needs_two_dims_each_side():
    beta = torch.tensor([0.75, 0.7499, 0.9, 0.1])
    assert salient_mask(beta, 0.25).tolist() == [True, False, True, False]
    assert has_split(torch.tensor([True, True, False, False]))
    assert not has_split(torch.tensor([True, False, False, False]))
    assert not has_split(torch.tensor([True, True, True, False]))


def test_model_falls_back_to_soft_weights_without_a_hard_split(cmnist):
    method = HSplid(HSplidParams(), cmnist.info)
    _, _, model = build(resolve("hsplid", "cmnist"), None)
    model = method.build_model(model.encoder)
    beta = torch.linspace(0, 1, model.embed_dim)
    model.beta.copy_(beta)
    model.salient.copy_(beta >= 0.9999)  # one salient dimension: no hard split
    s, n = model.gates()
    assert torch.equal(s, beta) and torch.equal(n, 1 - beta)
    model.salient.copy_(beta >= 0.5)
    s, n = model.gates()
    assert torch.equal(s, (beta >= 0.5).float()) and torch.equal(n, (beta < 0.5).float())
    x = torch.rand(3, *cmnist.info.input_shape)
    with torch.no_grad():  # the head sees z * m_s only
        torch.testing.assert_close(model(x), model.head(model.embed(x) * s))
        torch.testing.assert_close(model.views()["nonsalient_subspace"](x), model.head(model.embed(x) * n))


def test_centre_update_follows_the_two_rate_rule():
    centres, counts, c0 = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]), torch.tensor([4.0, 2.0, 7.0]), \
        torch.tensor([2.0, 2.0])
    z = torch.tensor([[2.0, 4.0], [4.0, 0.0], [3.0, 3.0]])
    y = torch.tensor([0, 0, 1])
    new, new_counts, new_c0 = update_centres(centres, counts, c0, z, y)
    assert new_counts.tolist() == [3.0, 1.5, 7.0]  # (4 + 2) / 2, (2 + 1) / 2, absent class unchanged
    torch.testing.assert_close(new[0], 0.75 * centres[0] + 0.25 * torch.tensor([3.0, 2.0]))
    torch.testing.assert_close(new[1], 0.6 * centres[1] + 0.4 * torch.tensor([3.0, 3.0]))
    assert torch.equal(new[2], centres[2])
    torch.testing.assert_close(new_c0, torch.tensor([2.5, 1 + 7 / 6]))  # (c_0 + batch mean) / 2


def test_compactness_terms_match_their_sums():
    g = torch.Generator().manual_seed(2)
    z, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
    centres, c0, beta = torch.randn(3, 4, generator=g), torch.randn(4, generator=g), torch.rand(4, generator=g)
    ls = sum(float(beta[d] ** 2 * (z[i, d] - centres[y[i], d]) ** 2) for i in range(8) for d in range(4)) / (8 * 3)
    ln = sum(float((1 - beta[d]) ** 2 * (z[i, d] - c0[d]) ** 2) for i in range(8) for d in range(4)) / 8
    assert class_compactness(z, y, centres, beta, 3).item() == pytest.approx(ls, rel=1e-5)
    assert global_compactness(z, c0, beta).item() == pytest.approx(ln, rel=1e-5)


def test_reference_switch_swaps_the_applied_hsic_weights(cmnist):
    params = dict(rho_x=0.5, rho_y=0.05)
    assert HSplid(HSplidParams(**params), cmnist.info).hsic_weights == (0.5, 0.05)
    assert HSplid(HSplidParams(**params, reference=True), cmnist.info).hsic_weights == (0.05, 0.5)


@pytest.mark.parametrize("bad", ["method.beta_step=1.0", "method.beta_update_fraction=0", "method.rho_x=-1",
                                 "method.threshold_offset=0.5", "method.beta_form=other"])
def test_bad_parameters_are_config_errors(bad):
    with pytest.raises(ConfigError):
        resolve("hsplid", "cmnist", overrides=[bad])


def class_means(z, y, k=10):
    """Slow per-class means; zero for a class absent from the sample."""
    return torch.stack([z[y == c].mean(0) if (y == c).any() else torch.zeros(z.shape[1], dtype=z.dtype)
                        for c in range(k)])


# The full method's terms (the C-MNIST preset): the quick profile turns them off (issue 21's selection).
TERMS_ON = [f"{key}={value}" for key, value in CMNIST_TERMS.items()]


def tiny_hsplid(cmnist, *overrides, samples=100, batch_size=10, epochs=1):
    config = resolve("hsplid", "cmnist", overrides=[f"train.samples={samples}", f"train.batch_size={batch_size}",
                                                    f"train.epochs={epochs}", "method.warmup_epochs=0", *TERMS_ON,
                                                    *overrides])
    torch.manual_seed(0)
    _, method, model = build(config, None)
    result = train(model, method, cmnist, config, torch.device("cpu"), Reporter(quiet=True))
    return config, method, model, result


def test_mask_updates_fire_at_the_scheduled_sample_counts(cmnist):
    # interval = 0.25 * 100 = 25 samples, steps of 10: the update fires on the batch crossing 25, 50, 75, 100.
    _, method, model, result = tiny_hsplid(cmnist, "method.beta_update_fraction=0.25", epochs=2)
    seen = [int(r["samples_seen"]) for r in result.trace]
    assert seen == [0, 30, 50, 80, 100, 130, 150, 180, 200]
    assert all(r["salient_dims"] == int(r["salient_dims"]) for r in result.trace)
    assert [h["salient_dims"] for h in result.history] == [result.trace[4]["salient_dims"],
                                                           result.trace[-1]["salient_dims"]]


def test_beta_moves_by_the_two_level_moving_average(cmnist):
    config = resolve("hsplid", "cmnist", overrides=["method.beta_step=0.5", "method.beta_update_fraction=1.0"])
    method = HSplid(config.method_params, cmnist.info)
    _, _, model = build(config, None)
    model = method.build_model(model.encoder)
    m = model.embed_dim
    model.beta.fill_(0.8)
    method.accumulated = torch.full((m,), 0.4)
    method.centres, method.counts, method.global_centre = torch.zeros(10, m), torch.ones(10), torch.zeros(m)
    state = TrainState(torch.device("cpu"), 1, 20, 10, cmnist.split("train"))
    beta_star = torch.full((m,), 0.2)
    y = torch.arange(10)
    method._last = (torch.zeros(10, m), y, beta_star)
    method.on_step_end(model, None, None, state)  # 10 of 20 samples: only the accumulator moves
    torch.testing.assert_close(method.accumulated, torch.full((m,), 0.3))
    assert torch.all(model.beta == 0.8)
    method._last = (torch.zeros(10, m), y, beta_star)
    method.on_step_end(model, None, None, state)  # 20 samples: beta <- 0.5 beta + 0.5 accumulated
    torch.testing.assert_close(method.accumulated, torch.full((m,), 0.25))
    torch.testing.assert_close(model.beta, torch.full((m,), 0.525))


def test_warm_start_keeps_the_full_embedding_until_the_mask_is_initialised(cmnist):
    _, method, model, result = tiny_hsplid(cmnist, "method.warmup_epochs=1", epochs=2)
    assert int(result.trace[0]["samples_seen"]) == 100  # initialised after the first (plain) epoch
    assert "loss_class_compactness" not in result.history[0] and "loss_class_compactness" in result.history[1]
    with pytest.raises(ConfigError, match="warmup_epochs"):
        tiny_hsplid(cmnist, "method.warmup_epochs=1", epochs=1)


def test_initialisation_uses_the_closed_form_on_clean_training_embeddings(cmnist):
    config = resolve("hsplid", "cmnist", overrides=["train.samples=64", "method.beta_init_fraction=0.5",
                                                    "method.reference=true", "method.warmup_epochs=0"])
    torch.manual_seed(0)
    ds, method, model = build(config, None)
    split = ds.split("train")
    indices = first_of_shuffle(len(split), 64)
    state = TrainState(torch.device("cpu"), 1, 64, 16, split, train_indices=indices)
    method.on_train_start(model.eval(), state)
    with torch.no_grad():
        z = model.embed(split.batch(indices[:32]).x).double()
    y = split.batch(indices[:32]).y
    means = class_means(z, y)
    c0 = z.mean(0) / 2  # the reference's first EMA step from 0
    torch.testing.assert_close(method.global_centre.double(), c0, atol=1e-5, rtol=1e-5)
    a, b = scatter(z, y, means, c0)
    torch.testing.assert_close(model.beta.double(), beta_reference(a, b), atol=1e-4, rtol=1e-4)


def test_training_step_reports_named_terms_and_finite_gradients(cmnist):
    config = resolve("hsplid", "cmnist", overrides=["train.samples=64", "method.threshold_offset=0.0",
                                                    "method.warmup_epochs=0", *TERMS_ON])
    torch.manual_seed(0)
    ds, method, model = build(config, None)
    state = TrainState(torch.device("cpu"), 1, 64, 32, ds.split("train"), train_indices=torch.arange(64))
    method.on_train_start(model, state)
    model.salient.copy_(torch.arange(model.embed_dim) % 2 == 0)  # force a hard split
    batch = ds.split("train").batch(torch.arange(32))
    out = method.training_step(model, batch, state)
    assert set(out.losses) == {"ce", "class_compactness", "global_compactness", "hsic_x_salient",
                               "hsic_y_nonsalient"}
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def unfused_step(method, model, batch):
    """The step as it was before its terms were fused, from the pure functions one at a time:
    the reference the fused step must equal (losses, gradients, closed form)."""
    p, k = method.params, method.info.num_classes
    z, y, mask = model.embed(batch.x), batch.y, model.salient
    with torch.no_grad():
        beta_star = method.closed_form(*scatter(z.float(), y, method.centres, method.global_centre))
    logits = model.head(z * model.gates()[0])
    w_x, w_y = method.hsic_weights
    r_x = normalised_operator(gaussian_kernel(model.normalize(batch.x), p.sigma), p.hsic_eps)
    r_s = normalised_operator(gaussian_kernel(z[:, mask], p.sigma), p.hsic_eps)
    losses = {"ce": p.lambda_ce * F.cross_entropy(logits, y),
              "class_compactness": p.lambda_s * class_compactness(z, y, method.centres, beta_star, k),
              "global_compactness": p.lambda_n * global_compactness(z, method.global_centre, beta_star),
              "hsic_x_salient": w_x * nhsic_from_operators(r_x, r_s),
              "hsic_y_nonsalient": w_y * nhsic(label_kernel(y, k), gaussian_kernel(z[:, ~mask], p.sigma), p.hsic_eps)}
    return {name: term for name, term in losses.items() if name == "ce" or term.requires_grad and term != 0}, beta_star


@pytest.mark.parametrize("extra", [[], ["method.reference=true"], ["method.rho_y=0"]])
def test_fused_step_equals_the_step_term_by_term(cmnist, extra):
    config = resolve("hsplid", "cmnist", overrides=["train.samples=64", "method.threshold_offset=0.0",
                                                    "method.warmup_epochs=0", *TERMS_ON, *extra])
    torch.manual_seed(0)
    ds, method, model = build(config, None)
    state = TrainState(torch.device("cpu"), 1, 64, 32, ds.split("train"), train_indices=torch.arange(64))
    method.on_train_start(model, state)  # centres and beta from the data
    model.salient.copy_(torch.arange(model.embed_dim) % 3 == 0)  # a hard split of unequal sizes
    batch = ds.split("train").batch(torch.arange(32))
    expected, beta_expected = unfused_step(method, model, batch)
    grads_expected = torch.autograd.grad(sum(expected.values()), list(model.parameters()))
    out = method.training_step(model, batch, state)
    assert set(out.losses) == set(expected)
    for name, term in expected.items():
        torch.testing.assert_close(out.losses[name], term, rtol=1e-5, atol=1e-7, msg=name)
    for got, want in zip(torch.autograd.grad(out.loss, list(model.parameters())), grads_expected):
        # rounding differs (one batched solve, zeroed columns): compare at the gradient's own scale
        assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())
    torch.testing.assert_close(method._last[2], beta_expected, rtol=0, atol=0)  # the closed form: the same sums


def test_split_is_read_again_after_the_mask_changes(cmnist):
    _, method, model, _ = tiny_hsplid(cmnist, samples=20)
    model.salient.fill_(True)
    assert not method.split_of(model)
    model.salient[::2] = False
    assert method.split_of(model)
    model.load_state_dict({**model.state_dict(), "salient": torch.ones_like(model.salient)})
    assert not method.split_of(model)


def test_checkpoint_round_trip_keeps_beta_mask_and_state(tmp_path, test_batch):
    outcome = run("hsplid", "cmnist", overrides=["train.samples=96", "train.batch_size=32", "train.epochs=1",
                                                 "method.warmup_epochs=0", "eval.samples=32",
                                                 "eval.suites=accuracy,robustness", "robustness.samples=8",
                                                 "robustness.steps=1",
                                                 "method.beta_update_fraction=0.5"],
                  workspace=Workspace(tmp_path, device="cpu"))
    raw = torch.load(outcome.checkpoint_path, weights_only=True)
    _, _, method, model, _ = restore(outcome.checkpoint_path, device="cpu")
    assert torch.equal(model.beta, raw["model"]["beta"]) and torch.equal(model.salient, raw["model"]["salient"])
    assert torch.equal(method.centres, raw["method_state"]["centres"])
    assert method.trace() == raw["method_state"]["trace"] and len(method.trace()) >= 2
    rows = {(m.suite, m.metric) for m in outcome.measurements}
    assert {("training", "salient_dims"), ("diagnostics", "accuracy_salient_subspace"),
            ("diagnostics", "accuracy_nonsalient_subspace")} <= rows
    traced = [m for m in outcome.measurements if m.metric == "salient_dims" and "samples_seen" in m.extra]
    assert [m.extra["samples_seen"] for m in traced] == [0, 64, 96]


def test_recomputed_evaluation_mask_is_the_closed_form_on_the_training_set(cmnist):
    config, method, model, _ = tiny_hsplid(cmnist, "method.eval_mask=recompute", samples=64, batch_size=32)
    split = cmnist.split("train")
    indices = first_of_shuffle(len(split), 64)
    model.eval()
    with torch.no_grad():
        z = model.embed(split.batch(indices).x).double()
    y = split.batch(indices).y
    means = class_means(z, y)
    torch.testing.assert_close(model.beta.double(), beta_reference(*scatter(z, y, means, z.mean(0))),
                               atol=1e-4, rtol=1e-4)
    assert torch.equal(model.salient, salient_mask(model.beta, config.method_params.threshold_offset))
