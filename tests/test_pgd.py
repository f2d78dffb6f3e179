"""Masked PGD on a trained C-MNIST model: the region is exact, the bounds hold, it hurts."""

import pytest
import torch
import torchattacks

from benchmark.attacks.pgd import MaskedPGD
from benchmark.attacks.regions import block, make_region
from benchmark.data.split import Batch
from benchmark.errors import ConfigError

REGIONS = ["full", "background", "foreground", "block", "right_digit"]


def attack(model, batch, region_name, cmnist, *, eps=0.3, norm="linf", steps=5, step_size=0.05, seed=0):
    gen = torch.Generator().manual_seed(seed)
    region = make_region(region_name, batch, gen, cmnist.regions())
    adv = MaskedPGD(model, eps=eps, norm=norm, steps=steps, step_size=step_size)(batch.x, batch.y, region, gen)
    return adv, region


@pytest.mark.parametrize("region_name", REGIONS)
@pytest.mark.parametrize("norm, eps", [("linf", 0.3), ("l2", 2.0)])
def test_outside_region_bit_identical_norm_bound_and_range(trained_lenet, test_batch, cmnist, region_name, norm, eps):
    adv, region = attack(trained_lenet, test_batch, region_name, cmnist, eps=eps, norm=norm,
                         step_size=0.05 if norm == "linf" else 0.5)
    outside = ~region.bool().expand_as(adv)
    assert torch.equal(adv[outside], test_batch.x[outside])
    delta = (adv - test_batch.x).flatten(1)
    if norm == "linf":
        assert delta.abs().max() <= eps + 1e-6
    else:
        assert delta.norm(dim=1).max() <= eps + 1e-5
    assert adv.min() >= 0 and adv.max() <= 1
    if region_name != "foreground" or norm == "linf":
        assert (adv != test_batch.x).any()  # the attack did change pixels inside the region


def test_full_region_equals_torchattacks_pgd_from_the_same_start(trained_lenet, test_batch):
    x, y = test_batch.x[:64], test_batch.y[:64]
    torch.manual_seed(123)
    reference = torchattacks.PGD(trained_lenet, eps=8 / 255, alpha=2 / 255, steps=5, random_start=True)(x, y)
    ours = MaskedPGD(trained_lenet, eps=8 / 255, steps=5, step_size=2 / 255)(
        x, y, torch.ones_like(x), torch.Generator().manual_seed(123))
    assert torch.equal(ours, reference)


def test_attack_lowers_accuracy_of_a_trained_model(trained_lenet, test_batch, cmnist):
    with torch.no_grad():
        clean = (trained_lenet(test_batch.x).argmax(1) == test_batch.y).float().mean()
    for region_name, eps in (("right_digit", 1.0), ("full", 0.1)):
        adv, _ = attack(trained_lenet, test_batch, region_name, cmnist, eps=eps, steps=10, step_size=0.0156)
        with torch.no_grad():
            robust = (trained_lenet(adv).argmax(1) == test_batch.y).float().mean()
        assert clean > 0.6 and robust < clean - 0.05


def test_same_seed_same_result_and_global_rng_untouched(trained_lenet, test_batch, cmnist):
    state = torch.get_rng_state()
    a, _ = attack(trained_lenet, test_batch, "block", cmnist, seed=7)
    b, _ = attack(trained_lenet, test_batch, "block", cmnist, seed=7)
    c, _ = attack(trained_lenet, test_batch, "block", cmnist, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)


def test_block_is_a_square_of_the_given_side_inside_the_background():
    mask = torch.zeros(50, 1, 40, 40)

    def of(m):
        return Batch(torch.zeros(50, 1, 40, 40), torch.zeros(50, dtype=torch.long), m, torch.arange(50))

    region = block(of(mask), torch.Generator().manual_seed(0), block_fraction=0.25)
    assert (region.flatten(1).sum(1) == 100).all()  # 10 x 10 with an empty object mask
    rows = region[:, 0].any(dim=2).sum(1)
    cols = region[:, 0].any(dim=1).sum(1)
    assert (rows == 10).all() and (cols == 10).all()
    mask[..., :20] = 1
    clipped = block(of(mask), torch.Generator().manual_seed(0), block_fraction=0.25)
    assert (clipped * mask).sum() == 0 and torch.equal(clipped, region * (1 - mask))


def test_unknown_region_names_the_known_ones(test_batch, cmnist):
    with pytest.raises(ConfigError, match="unknown attack region 'left'.*right_digit"):
        make_region("left", test_batch, torch.Generator(), cmnist.regions())
