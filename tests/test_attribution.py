"""Attribution: agreement metrics by hand and against Quantus, explainers, Start Grad, the suite."""

import warnings

import numpy as np
import pytest
import torch

from benchmark.attribution.pixel_mask import PixelMaskParams, optimise_masks, quantile_transform, start_grad
from benchmark.attribution.scoring import (
    average_ranks,
    cp_pixel,
    deletion_insertion,
    energy_pointing_game,
    iou_at_mask_size,
    pixel_auroc,
    pixel_map,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)
from benchmark.metrics import agreement_scores
from benchmark.registry import EXPLAINERS
from benchmark.suites.attribution import BUILTIN_EXPLAINERS, default_metrics

F64 = torch.float64


def agreement(name, a, s, top_k):
    """One registered agreement metric by name."""
    return agreement_scores(a, s, [name], top_k)[name]


def rows(*values):
    return torch.tensor(values, dtype=F64)


def test_metrics_match_hand_computed_values():
    a = rows([0.9, 0.1, 0.5, 0.2])
    s = torch.tensor([[True, False, True, False]])
    assert float(pointing_game(a, s)) == 1.0
    assert float(relevance_mass_accuracy(a, s)) == pytest.approx(1.4 / 1.7)
    assert float(relevance_rank_accuracy(a, s)) == 1.0  # top-2 = {0, 2} = S
    assert float(top_k_intersection(a, s, 1)) == 1.0
    assert float(top_k_intersection(a, s, 3)) == pytest.approx(2 / 3)  # {0, 2, 3}
    assert float(pixel_auroc(a, s)) == 1.0  # every object pixel above every background pixel
    assert float(iou_at_mask_size(a, s)) == 1.0
    # min-max: [1, 0, 0.5, 0.125] -> 1.5 / 1.625
    assert float(energy_pointing_game(a, s)) == pytest.approx(1.5 / 1.625)
    miss = torch.tensor([[False, True, False, True]])
    assert float(pointing_game(a, miss)) == 0.0
    assert float(pixel_auroc(a, miss)) == 0.0
    assert float(iou_at_mask_size(a, miss)) == 0.0  # top-2 {0, 2} vs {1, 3}


def test_ties_are_scored_in_expectation_not_by_pixel_order():
    a = rows([1.0, 1.0, 0.0, 0.0])
    s = torch.tensor([[False, True, False, False]])
    assert float(pointing_game(a, s)) == 0.5  # one of the two tied maxima is on the object
    assert float(relevance_rank_accuracy(a, s)) == 0.5  # one place, two tied candidates
    assert float(iou_at_mask_size(a, s)) == pytest.approx(0.5 / 1.5)
    assert float(top_k_intersection(a, s, 2)) == 0.5
    assert float(pixel_auroc(a, s)) == pytest.approx((1 + 1 + 0.5) / 3)  # tie with the other 1.0 counts half
    assert float(energy_pointing_game(a, s)) == 0.5
    # The order of pixels cannot matter: mirrored map and mask give the same scores.
    for name in default_metrics():
        assert float(agreement(name, a, s, 2)) == pytest.approx(float(agreement(name, a.flip(1), s.flip(1), 2)))
    flat = torch.zeros(1, 4, dtype=F64)
    assert float(relevance_mass_accuracy(flat, s)) == 0.25 and float(energy_pointing_game(flat, s)) == 0.25  # chance
    assert float(relevance_rank_accuracy(flat, s)) == pytest.approx(0.25)  # chance level
    assert float(pixel_auroc(flat, s)) == 0.5


def test_average_ranks_match_a_slow_loop():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (6, 40), generator=g).to(F64)
    ranks = average_ranks(a)
    for row, r in zip(a, ranks):
        for i, v in enumerate(row):
            below, equal = int((row < v).sum()), int((row == v).sum())
            assert float(r[i]) == below + (equal + 1) / 2


def test_a_mask_covering_the_whole_image_has_no_auroc():
    a = rows([0.3, 0.2])
    assert torch.isnan(pixel_auroc(a, torch.tensor([[True, True]]))).all()


@pytest.fixture(scope="module")
def random_maps():
    rng = np.random.default_rng(0)
    a = rng.random((64, 1, 16, 16))
    s = (rng.random((64, 1, 16, 16)) < 0.3).astype(np.float64)
    s[:, 0, 0, 0], s[:, 0, 0, 1] = 1.0, 0.0  # never empty, never full
    return a, s


QUANTUS_PAIRS = {
    "pointing_game": ("PointingGame", {}),
    "relevance_mass_accuracy": ("RelevanceMassAccuracy", {}),
    "relevance_rank_accuracy": ("RelevanceRankAccuracy", {}),
    "top_k_intersection": ("TopKIntersection", {"k": 25}),
    "pixel_auroc": ("AUC", {}),
}


@pytest.mark.parametrize("name", sorted(QUANTUS_PAIRS))
def test_metrics_agree_with_quantus_on_random_maps(name, random_maps):
    quantus = pytest.importorskip("quantus")
    a, s = random_maps
    cls, kwargs = QUANTUS_PAIRS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = getattr(quantus, cls)(normalise=False, abs=False, disable_warnings=True, **kwargs)
        expected = np.asarray(metric(model=None, x_batch=np.zeros_like(a), y_batch=np.zeros(len(a), dtype=int),
                                     a_batch=a, s_batch=s, channel_first=True), dtype=np.float64)
    ours = agreement(name, torch.from_numpy(a).flatten(1), torch.from_numpy(s).flatten(1) > 0, 25).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-6, rtol=0)


def test_start_grad_is_a_per_image_quantile_transform_of_the_gradient(trained_lenet, test_batch):
    x, y = test_batch.x[:4], test_batch.y[:4]
    init = start_grad(trained_lenet, x, y)
    leaf = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(trained_lenet(leaf).gather(1, y.view(-1, 1)).sum(), leaf)[0].abs().amax(1)
    for m, g in zip(init.flatten(1), grad.flatten(1)):
        assert float(m.min()) == 0.0 and float(m.max()) == 1.0
        # ranks preserved: a larger gradient never gets a smaller initial value, equal ones share it
        order = torch.argsort(g)
        assert bool((m[order][1:] >= m[order][:-1]).all())
        assert bool(((g.unsqueeze(0) == g.unsqueeze(1)) <= (m.unsqueeze(0) == m.unsqueeze(1))).all())
    distinct = torch.tensor([[0.3, -2.0, 5.0, 0.1, 7.0]])
    torch.testing.assert_close(quantile_transform(distinct), torch.tensor([[0.5, 0.0, 0.75, 0.25, 1.0]]))


def test_mask_optimisation_records_iterations_and_keeps_masks_in_range(trained_lenet, test_batch):
    x, y = test_batch.x[:4], test_batch.y[:4]
    g = torch.Generator().manual_seed(0)
    params = PixelMaskParams(init="uniform", iterations=5, noise_draws=2)
    final, recorded = optimise_masks(trained_lenet, x, y, g, params, record_at=(0, 2, 5))
    assert sorted(recorded) == [0, 2, 5] and torch.equal(recorded[5], final)
    assert final.shape == (4, 1, *x.shape[-2:]) and float(final.min()) >= 0 and float(final.max()) <= 1
    assert not torch.equal(recorded[0], final)
    retained, cp = cp_pixel(trained_lenet, x, torch.ones_like(final), y)
    torch.testing.assert_close(retained, torch.ones(4))
    torch.testing.assert_close(cp, torch.ones(4))


@pytest.mark.parametrize("name", BUILTIN_EXPLAINERS)
def test_every_explainer_is_deterministic_and_leaves_the_global_rng_alone(name, trained_lenet, test_batch):
    x, y = test_batch.x[:6], test_batch.y[:6]
    options = {"pixel_mask": {"iterations": 3, "noise_draws": 2}, "integrated_gradients": {"n_steps": 8},
               "smoothgrad": {"samples": 4}}.get(name, {})
    explainer = EXPLAINERS.get(name)(trained_lenet, **options)
    before = torch.random.get_rng_state()
    first = explainer(x, y, torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), before)
    second = explainer(x, y, torch.Generator().manual_seed(3))
    assert first.shape[0] == 6 and first.shape[-2:] == x.shape[-2:] and first.shape[1] in (1, x.shape[1])
    torch.testing.assert_close(first, second)
    assert torch.isfinite(first).all() and float(first.abs().sum()) > 0


def test_explainers_refuse_a_model_in_training_mode(trained_lenet, test_batch):
    trained_lenet.train()
    try:
        with pytest.raises(ValueError, match="eval mode"):
            EXPLAINERS.get("saliency")(trained_lenet)(test_batch.x[:2], test_batch.y[:2], torch.Generator())
    finally:
        trained_lenet.eval()


@pytest.mark.parametrize("name", ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad"])
def test_gradient_maps_put_more_mass_on_the_left_digit_than_its_area(name, trained_lenet, test_batch):
    x, y, mask = test_batch.x[:64], test_batch.y[:64], test_batch.mask[:64]
    options = {"integrated_gradients": {"n_steps": 16}, "smoothgrad": {"samples": 8}}.get(name, {})
    a = pixel_map(EXPLAINERS.get(name)(trained_lenet, **options)(x, y, torch.Generator().manual_seed(0)))
    s = mask.flatten(1) > 0.5
    area = float(s.float().mean())
    assert area == 0.5
    assert float(relevance_mass_accuracy(a, s).mean()) > area + 0.1


def test_deletion_is_below_insertion_for_saliency_and_both_are_probabilities(trained_lenet, test_batch):
    x, y = test_batch.x[:32], test_batch.y[:32]
    a = pixel_map(EXPLAINERS.get("saliency")(trained_lenet)(x, y, torch.Generator()))
    deletion, insertion = deletion_insertion(trained_lenet, x, a, y, steps=8)
    assert ((deletion >= 0) & (deletion <= 1) & (insertion >= 0) & (insertion <= 1)).all()
    assert float(deletion.mean()) < float(insertion.mean())
    # a random ranking deletes the evidence more slowly than saliency does
    random_order = torch.rand(a.shape, generator=torch.Generator().manual_seed(0))
    random_deletion, _ = deletion_insertion(trained_lenet, x, random_order, y, steps=8)
    assert float(deletion.mean()) < float(random_deletion.mean())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rank_metrics_with_many_ties_match_slow_definitions_in_both_precisions(dtype):
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 4, (5, 60), generator=g).to(dtype) * torch.tensor(-0.5 if dtype == torch.float32 else 0.5,
                                                                            dtype=dtype)  # negatives too
    s = torch.rand(5, 60, generator=g) < 0.4
    auroc, rank_acc = pixel_auroc(a, s), relevance_rank_accuracy(a, s)
    for i in range(5):
        pos, neg = a[i][s[i]], a[i][~s[i]]
        wins = (pos.unsqueeze(1) > neg.unsqueeze(0)).double() + 0.5 * (pos.unsqueeze(1) == neg.unsqueeze(0)).double()
        assert float(auroc[i]) == pytest.approx(float(wins.mean()), abs=1e-6)
        k = int(s[i].sum())  # expected hits under random tie-breaking, by enumeration of value levels
        hits, left = 0.0, k
        for level in sorted(set(a[i].tolist()), reverse=True):
            at = a[i] == level
            take = min(left, int(at.sum()))
            hits += take * float(s[i][at].double().mean())
            left -= take
        assert float(rank_acc[i]) == pytest.approx(hits / k, abs=1e-6)


def test_gaussian_blur_matches_torchvision():
    import torchvision.transforms.functional as TF

    from benchmark.attribution.scoring import gaussian_blur

    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gaussian_blur(x, 11, 5.0), TF.gaussian_blur(x, [11, 11], [5.0, 5.0]))


def test_heatmap_tiles_are_laid_out_row_by_row():
    from benchmark.suites.attribution import tile

    grid = tile(torch.stack([torch.zeros(2, 3), torch.full((2, 3), 0.5), torch.full((2, 3), 0.25)]), columns=2)
    assert grid.shape == (2 + 2 * 4, 2 + 2 * 5)
    assert float(grid[2:4, 2:5].max()) == 0.0 and float(grid[2:4, 7:10].min()) == 0.5
    assert float(grid[6:8, 2:5].min()) == 0.25 and float(grid[6:8, 7:10].min()) == 1.0  # empty cell: fill
