"""Randomisation sanity checks: MPRT against Quantus, a model-blind explainer caught, the random
logit on a toy model whose classes read disjoint halves, and the evaluated model left untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.attribution import Explainer
from benchmark.config import resolve
from benchmark.engine.evaluate import evaluate
from benchmark.registry import EXPLAINERS
from benchmark.suites.sanity import INSENSITIVE, randomised_cascade, spearman_rows


@EXPLAINERS.register("edge_filter")
class EdgeFilter(Explainer):
    """A model-blind 'explainer': the gradient magnitude of the input image itself."""

    default = False

    def attribute(self, x, target, generator):
        grey = x.mean(dim=1, keepdim=True)
        dx = F.pad(grey[..., :, 1:] - grey[..., :, :-1], (0, 1))
        dy = F.pad(grey[..., 1:, :] - grey[..., :-1, :], (0, 0, 0, 1))
        return (dx.abs() + dy.abs()).detach()


def sanity_rows(model, cmnist, explainers, samples=16):
    config = resolve("vanilla", "cmnist", overrides=[
        "eval.suites=sanity", f"sanity.explainers={','.join(explainers)}", f"sanity.samples={samples}"])
    return evaluate(model, cmnist, config, torch.device("cpu")).measurements


def test_mprt_equals_quantus_layer_by_layer_for_gradient_saliency(trained_lenet, cmnist, test_batch):
    quantus = pytest.importorskip("quantus")
    saliency = EXPLAINERS.get("saliency")
    x, y = test_batch.x[:8], test_batch.y[:8]

    def explain(model, inputs, targets, **kwargs):
        out = saliency(model.eval())(torch.as_tensor(inputs), torch.as_tensor(targets), torch.Generator())
        return out.numpy()

    reference = quantus.MPRT(layer_order="top_down", seed=0, disable_warnings=True, display_progressbar=False)(
        model=trained_lenet, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None, explain_func=explain,
        device="cpu", batch_size=8)
    trained = saliency(trained_lenet)(x, y, torch.Generator()).abs().flatten(1)
    ours = {layer: spearman_rows(trained, saliency(model.eval())(x, y, torch.Generator()).abs().flatten(1))
            for layer, model in randomised_cascade(trained_lenet, seed=0)}
    layers = [k for k in reference if k != "original"]
    assert layers == list(ours)  # the same modules, in the same order (top down)
    for layer in layers:
        assert np.allclose(ours[layer], reference[layer], atol=1e-6), layer
    assert all(np.isfinite(v).all() for v in ours.values())


def test_a_model_blind_explainer_is_flagged_and_gradient_saliency_is_not(trained_lenet, cmnist):
    rows = sanity_rows(trained_lenet, cmnist, ["edge_filter", "saliency"])
    full = {r.explainer: r for r in rows if r.metric == "model_randomisation_similarity"}
    assert full["edge_filter"].value == pytest.approx(1.0) and INSENSITIVE in full["edge_filter"].flags
    assert full["saliency"].value < 0.5 and INSENSITIVE not in full["saliency"].flags
    curve = [r for r in rows if r.metric == "mprt_similarity" and r.explainer == "saliency"]
    assert [r.extra["depth"] for r in curve] == [1, 2, 3, 4]
    assert curve[-1].value == pytest.approx(full["saliency"].value)
    above = [r for r in rows if r.metric == "agreement_above_random_model" and r.explainer == "edge_filter"]
    assert above and all(r.value == pytest.approx(0.0, abs=1e-12) for r in above)  # nothing above a blind map
    random = [r for r in rows if r.metric == "random_map_agreement"]
    assert random and all(r.explainer == "random" for r in random)
    for r in rows:
        assert r.records is not None and r.value == pytest.approx(r.records.mean())


class Halves(nn.Module):
    """Two classes: class 0 reads the left half of the image, class 1 the right half."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(2, 1, 8, 4, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        left, right = x[..., :4], x[..., 4:]
        return torch.stack([(left * self.weight[0]).flatten(1).sum(1), (right * self.weight[1]).flatten(1).sum(1)], 1)

    def reset_parameters(self):
        nn.init.normal_(self.weight)


def test_random_logit_maps_of_classes_that_read_disjoint_halves_are_dissimilar():
    model = Halves().eval()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    saliency = EXPLAINERS.get("saliency")(model)
    own = saliency(x, torch.zeros(6, dtype=torch.long), torch.Generator()).abs().flatten(1)
    other = saliency(x, torch.ones(6, dtype=torch.long), torch.Generator()).abs().flatten(1)
    similarity = spearman_rows(own, other)
    assert (similarity < 0).all()  # each map is non-zero exactly where the other is zero


def test_the_evaluated_model_is_bit_identical_after_the_suite(trained_lenet, cmnist):
    before = {k: v.clone() for k, v in trained_lenet.state_dict().items()}
    rng = torch.get_rng_state()
    sanity_rows(trained_lenet, cmnist, ["saliency"], samples=4)
    after = trained_lenet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(rng, torch.get_rng_state())  # re-initialising drew from a forked generator


def test_the_board_shows_the_checks_marks_the_blind_explainer_and_the_relation_sets_it_aside(trained_lenet, cmnist,
                                                                                           tmp_path):
    from datetime import datetime, timezone

    from benchmark.engine.saving import write_results
    from benchmark.results.relation import Relation
    from benchmark_leaderboard.render import render_html, render_markdown
    from benchmark_leaderboard.report import build_report

    config = resolve("vanilla", "cmnist", overrides=["eval.suites=sanity"])
    rows = sanity_rows(trained_lenet, cmnist, ["edge_filter", "saliency"], samples=8)
    write_results(rows, config, datetime(2026, 12, 6, tzinfo=timezone.utc), torch.device("cpu"), "fixture",
                  tmp_path / "run.parquet", train_commit="fixture")
    boards, problems, sources = build_report([tmp_path])
    (board,) = boards
    assert board.insensitive == ["edge_filter"]
    assert list(board.sanity)[:2] == ["similarity after full randomisation", "random-logit similarity"]
    html = render_html(boards, problems, sources, "now")
    assert "Sanity checks: do the maps depend on the model?" in html and 'title="model_insensitive"' in html
    assert "Model-insensitive explainers" in render_markdown(boards) and "edge_filter" in render_markdown(boards)
    from benchmark.results.relation import Correlation

    ranked = [Correlation("edge_filter", "relevance_mass_accuracy", "t", 0.9, 0.5, 1.0, 0.9, 0.5, 1.0, 6, p=0.001,
                          p_adjusted=0.004, p_partial_adjusted=0.004),
              Correlation("saliency", "relevance_mass_accuracy", "t", 0.6, 0.1, 0.9, 0.5, 0.1, 0.9, 6, p=0.01,
                          p_adjusted=0.02, p_partial_adjusted=0.02)]
    relation = Relation("t", "relevance_mass_accuracy", ranked, ranked, ineligible={"edge_filter"})
    assert relation.best is ranked[1]  # the blind explainer ranks first but is not eligible


def test_a_model_with_nothing_to_reinitialise_gets_the_random_logit_test_only(trained_lenet, cmnist, test_batch):
    traced = torch.jit.trace(trained_lenet, test_batch.x[:2]).eval()
    rows = sanity_rows(traced, cmnist, ["saliency"], samples=4)
    assert {r.metric for r in rows if r.explainer == "saliency"} == {"random_logit_similarity"}
