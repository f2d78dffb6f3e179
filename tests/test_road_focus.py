"""ROAD's noisy linear imputation (exact values and Quantus), its curves against Quantus's ROAD,
and Focus on hand-built mosaics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.attribution.focus import class_mosaics, focus
from benchmark.attribution.road import impute, road_curves


def test_an_imputed_pixel_is_the_weighted_mean_of_its_neighbours():
    image = np.arange(9, dtype=np.float64).reshape(1, 3, 3)  # 0 1 2 / 3 4 5 / 6 7 8
    centre = impute(image, np.array([4]))
    edges, diagonals = (1 + 3 + 5 + 7) / 6, (0 + 2 + 6 + 8) / 12
    assert centre[0, 1, 1] == pytest.approx(edges + diagonals)  # the weights sum to 1 inside the image
    corner = impute(image, np.array([0]))
    assert corner[0, 0, 0] == pytest.approx((1 / 6 + 3 / 6 + 4 / 12) / (1 / 6 + 1 / 6 + 1 / 12))
    both = impute(image, np.array([0, 1]))  # two neighbours removed together: one linear system
    a, b = both[0, 0, 0], both[0, 0, 1]
    assert a * (5 / 12) == pytest.approx(b / 6 + 3 / 6 + 4 / 12)
    assert b * (8 / 12) == pytest.approx(a / 6 + 2 / 6 + 4 / 6 + 3 / 12 + 5 / 12)  # three edges, two diagonals
    assert np.array_equal(np.delete(both.ravel(), [0, 1]), np.delete(image.ravel(), [0, 1]))  # the rest is kept


def test_imputation_equals_quantus_and_noise_is_seeded():
    perturb = pytest.importorskip("quantus.functions.perturb_func")
    rng = np.random.default_rng(0)
    image = rng.random((3, 12, 10))
    removed = rng.choice(120, 70, replace=False)
    assert np.abs(impute(image, removed) - perturb.noisy_linear_imputation(image, removed, noise=0.0)).max() < 1e-12
    noisy = [impute(image, removed, 0.01, np.random.default_rng(3)) for _ in range(2)]
    assert np.array_equal(noisy[0], noisy[1]) and not np.array_equal(noisy[0], impute(image, removed))


def test_road_morf_curve_equals_quantus_road_without_noise(trained_lenet, test_batch):
    quantus = pytest.importorskip("quantus")
    x, y = test_batch.x[:6], test_batch.y[:6]
    maps = torch.rand(6, 64 * 64, generator=torch.Generator().manual_seed(0))  # no ties
    fractions = (0.1, 0.4, 0.7)
    morf, lerf = road_curves(trained_lenet, x, maps, y, fractions, noise=0.0, seed=0)
    reference = quantus.ROAD(noise=0.0, percentages=[10, 40, 70], disable_warnings=True, display_progressbar=False,
                             return_aggregate=False)(model=trained_lenet, x_batch=x.numpy(), y_batch=y.numpy(),
                                                     a_batch=maps.view(6, 1, 64, 64).numpy(), device="cpu")
    assert morf.mean(0).tolist() == pytest.approx([reference[p] for p in (10, 40, 70)])
    flipped, _ = road_curves(trained_lenet, x, -maps, y, fractions, noise=0.0, seed=0)
    assert torch.equal(flipped, lerf)  # LeRF is MoRF of the reversed ranking


def test_focus_is_one_on_the_class_quadrant_a_quarter_for_a_uniform_map_and_a_half_on_halves():
    part = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    part[0, :, :4, :4] = True
    part[1, :, 4:, 4:] = True
    exact = part.float()
    assert focus(exact, part.flatten(1)).tolist() == [1.0, 1.0]
    assert focus(torch.ones(2, 1, 8, 8), part.flatten(1)).tolist() == [0.25, 0.25]
    halves = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    halves[..., :4] = True
    assert focus(torch.ones(1, 1, 8, 8), halves.flatten(1)).tolist() == [0.5]
    assert focus(-torch.ones(1, 1, 8, 8), halves.flatten(1)).isnan().all()  # no positive relevance
    signed = torch.ones(1, 1, 8, 8)
    signed[..., 4:] = -5.0  # negative relevance elsewhere does not count
    assert focus(signed, halves.flatten(1)).tolist() == [1.0]


def test_a_mosaic_holds_the_image_in_its_quadrant_and_other_classes_elsewhere():
    x = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(4)])
    labels = torch.tensor([0, 1, 2, 3])
    mosaics, parts = class_mosaics(x, labels, torch.Generator().manual_seed(0))
    assert mosaics.shape == x.shape and parts.shape == (4, 64)
    for i in range(4):
        inside = mosaics[i, 0].flatten()[parts[i]]
        outside = mosaics[i, 0].flatten()[~parts[i]]
        assert (inside == i).all() and int(parts[i].sum()) == 16
        assert not (outside == i).any()  # the other quadrants come from other classes
