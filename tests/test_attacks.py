"""The attack suite: invariants of every attack and region, AutoAttack vs PGD, seeds, sanity flags."""

import pytest
import torch
import torchattacks

from benchmark.attacks.apgd import checkpoints, dlr_loss
from benchmark.attacks.regions import make_region
from benchmark.config import resolve
from benchmark.data.image_corruptions import CORRUPTIONS, corrupt
from benchmark.engine.evaluate import evaluate
from benchmark.registry import ATTACKS
from benchmark.results.store import Measurement
from benchmark.suites.robustness import sanity_flags

SMALL = {  # attack -> (norm, options): budgets small enough for a test, every code path taken
    "pgd": ("linf", {"steps": 3}),
    "pgd-l2": ("l2", {"steps": 3}),
    "apgd-ce": ("linf", {"steps": 4}),
    "apgd-dlr": ("linf", {"steps": 4}),
    "apgd-t": ("linf", {"steps": 2, "target_classes": 2}),
    "square": ("linf", {"steps": 15}),
    "autoattack": ("linf", {"steps": 2, "queries": 10, "target_classes": 2}),
    "autoattack-rand": ("linf", {"steps": 2, "eot": 2}),
    "noise": ("linf", {}),
}
REGIONS = ["full", "background", "foreground", "block", "right_digit"]


def build(name, model, eps):
    norm, options = SMALL[name]
    return ATTACKS.get(name.removesuffix("-l2"))(model, eps=eps, norm=norm, step_size=0.05, num_classes=10, **options)


@pytest.mark.parametrize("name", list(SMALL))
def test_every_attack_respects_region_budget_and_range(name, trained_lenet, test_batch, cmnist):
    x, y = test_batch.x[:6], test_batch.y[:6]
    sub = type(test_batch)(x, y, test_batch.mask[:6], test_batch.index[:6])
    eps = 2.0 if name == "pgd-l2" else 0.2
    for region_name in REGIONS:
        region = make_region(region_name, sub, torch.Generator().manual_seed(0), cmnist.regions())
        adv = build(name, trained_lenet, eps)(x, y, region, torch.Generator().manual_seed(1))
        outside = ~region.bool().expand_as(x)
        assert torch.equal(adv[outside], x[outside]), (name, region_name)
        assert adv.min() >= 0 and adv.max() <= 1
        delta = (adv - x).flatten(1)
        bound = delta.norm(dim=1).max() if name == "pgd-l2" else delta.abs().max()
        assert bound <= eps + 1e-5, (name, region_name, float(bound))


def test_every_attack_is_seeded_and_leaves_the_global_rng_alone(trained_lenet, test_batch, cmnist):
    x, y = test_batch.x[:4], test_batch.y[:4]
    region = torch.ones_like(x)
    for name in SMALL:
        state = torch.get_rng_state()
        first = build(name, trained_lenet, 0.3)(x, y, region, torch.Generator().manual_seed(3))
        second = build(name, trained_lenet, 0.3)(x, y, region, torch.Generator().manual_seed(3))
        assert torch.equal(torch.get_rng_state(), state), name
        assert torch.equal(first, second), name


def test_full_image_pgd_equals_torchattacks_from_the_same_start(trained_lenet, test_batch):
    x, y = test_batch.x[:32], test_batch.y[:32]
    ours = ATTACKS.get("pgd")(trained_lenet, eps=0.1, steps=5, step_size=0.02, random_start=False)
    theirs = torchattacks.PGD(trained_lenet, eps=0.1, alpha=0.02, steps=5, random_start=False)
    assert torch.equal(ours(x, y, torch.ones_like(x), torch.Generator()), theirs(x, y))


def test_autoattack_is_never_weaker_than_pgd(trained_lenet, test_batch, cmnist):
    x, y = test_batch.x[:32], test_batch.y[:32]
    region = cmnist.regions()["right_digit"](test_batch)[:32]

    def accuracy(adv):
        with torch.no_grad():
            return float((trained_lenet(adv).argmax(1) == y).float().mean())

    for eps in (0.3, 1.0):
        pgd = ATTACKS.get("pgd")(trained_lenet, eps=eps, steps=10, step_size=0.0156)
        aa = ATTACKS.get("autoattack")(trained_lenet, eps=eps, steps=10, queries=20, num_classes=10,
                                        target_classes=3)
        rand = ATTACKS.get("autoattack-rand")(trained_lenet, eps=eps, steps=10, eot=1, num_classes=10)
        g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
        pgd_acc = accuracy(pgd(x, y, region, g()))
        assert accuracy(aa(x, y, region, g())) <= pgd_acc
        assert accuracy(rand(x, y, region, g())) <= pgd_acc


def test_apgd_checkpoints_and_dlr_match_the_paper():
    # p: 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (Croce & Hein 2020, section 3.2)
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    assert dlr_loss(logits, torch.tensor([0])).item() == pytest.approx(-(3 - 2) / (3 - 1))
    assert dlr_loss(logits, torch.tensor([1])).item() == pytest.approx(-(1 - 3) / (3 - 1))


def test_targeted_apgd_refuses_datasets_with_fewer_than_four_classes(trained_lenet):
    with pytest.raises(ValueError, match="at least 4 classes"):
        ATTACKS.get("apgd-t")(trained_lenet, eps=0.1, num_classes=3)


# -- corruptions -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CORRUPTIONS.names())
def test_corruptions_change_only_the_region_and_grow_with_severity(name, test_batch, cmnist):
    x = test_batch.x[:16]
    region = cmnist.regions()["right_digit"](test_batch)[:16]
    changes = []
    for severity in (1, 3, 5):
        out = corrupt(x, name, severity, region, torch.Generator().manual_seed(0))
        outside = ~region.bool().expand_as(x)
        assert torch.equal(out[outside], x[outside]) and out.min() >= 0 and out.max() <= 1
        changes.append(float((out - x).abs().mean()))
    assert 0 < changes[0] < changes[2], changes


def test_brightness_keeps_hue_and_saturation_on_colour_images():
    x = torch.tensor([0.2, 0.4, 0.1]).view(1, 3, 1, 1)
    out = CORRUPTIONS.get("brightness")(x, 2)  # c = 0.2: V 0.4 -> 0.6, every channel scales by 1.5
    torch.testing.assert_close(out.flatten(), torch.tensor([0.3, 0.6, 0.15]))


# -- sanity flags ------------------------------------------------------------------------------
def row(attack, eps, value, region="full", seed=0):
    metric = "baseline_accuracy" if attack == "noise" else "robust_accuracy"
    return Measurement("robustness", metric, value, 100, attack=attack, region=region, norm="linf",
                       eps=eps, attack_seed=seed)


def test_sanity_flags_on_constructed_rows():
    rows = [row("pgd", 0.1, 0.5), row("pgd", 0.2, 0.6), row("pgd", 0.3, 0.95), row("noise", 0.1, 0.4),
            row("noise", 0.2, 0.9), row("pgd", 0.1, 0.5, region="block")]
    sanity_flags(rows, vanishing_regions={"block"})
    flags = [set(r.flags) for r in rows]
    assert flags[0] == {"noise_beats_attack"}
    assert flags[1] == {"robust_rises_with_eps"}
    assert flags[2] == {"robust_rises_with_eps"}
    assert flags[3] == set() and flags[4] == {"robust_rises_with_eps"}
    assert flags[5] == {"vanishing_gradients"}


class _Reversed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class Wrapped(torch.nn.Module):
    """A trained model behind an input transform that breaks gradient-based attacks."""

    def __init__(self, model, transform):
        super().__init__()
        self.model, self.transform = model, transform

    def forward(self, x):
        return self.model(self.transform(x))


def run_suite(model, cmnist, grid):
    config = resolve("vanilla", "cmnist", overrides=[
        "eval.suites=robustness", "robustness.samples=48", f"robustness.grid={grid}", "robustness.steps=5"])
    rows = evaluate(model, cmnist, config, torch.device("cpu")).measurements
    attacked = ("robust_accuracy", "baseline_accuracy")
    return {(r.attack, r.region, r.eps): set(r.flags) for r in rows if r.metric in attacked}, rows


def test_vanishing_gradients_flag_fires_on_a_rounding_model_only(trained_lenet, cmnist):
    grid = '{"pgd": {"full": [0.1]}}'
    rounded = Wrapped(trained_lenet, lambda x: torch.round(x * 255) / 255)
    flags, rows = run_suite(rounded, cmnist, grid)
    assert "vanishing_gradients" in flags[("pgd", "full", 0.1)]
    assert [r.value for r in rows if r.metric == "zero_gradient_fraction"] == [1.0]
    normal, _ = run_suite(trained_lenet, cmnist, grid)
    assert all(not f for f in normal.values()), normal


def test_noise_beats_attack_flag_fires_when_gradients_point_the_wrong_way(trained_lenet, cmnist):
    grid = '{"pgd": {"full": [0.3]}}'
    flags, _ = run_suite(Wrapped(trained_lenet, _Reversed.apply), cmnist, grid)
    assert "noise_beats_attack" in flags[("pgd", "full", 0.3)]
    normal, _ = run_suite(trained_lenet, cmnist, grid)
    assert "noise_beats_attack" not in normal[("pgd", "full", 0.3)]


def test_rising_with_eps_flag_fires_on_a_model_fooled_only_by_small_perturbations(trained_lenet, cmnist, test_batch):
    def roughness(x):
        return (x[..., 1:] - x[..., :-1]).abs().flatten(1).mean(1)

    x = test_batch.x[:64]
    g = torch.Generator().manual_seed(0)
    small = ATTACKS.get("noise")(None, eps=0.05)(x, test_batch.y[:64], torch.ones_like(x), g)
    low, high = float(roughness(x).max()), float(roughness(small).min())
    assert low < high

    class Banded(torch.nn.Module):
        """Right on clean and strongly perturbed images, wrong (labels rolled) in between."""

        def forward(self, x):
            logits = trained_lenet(x)
            r = roughness(x).view(-1, 1)
            band = (r > low) & (r < 2 * high)
            return torch.where(band, logits.roll(1, dims=1), logits)

    flags, _ = run_suite(Banded(), cmnist, '{"noise": {"full": [0.05, 0.5]}}')
    assert "robust_rises_with_eps" in flags[("noise", "full", 0.5)]
    assert "robust_rises_with_eps" not in flags[("noise", "full", 0.05)]


def test_core_and_spurious_noise_leaves_the_other_region_bit_identical():
    from benchmark.suites.corruptions import noisy_in

    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    region = torch.zeros(3, 1, 16, 16)
    region[..., :, 8:] = 1.0
    out = noisy_in(x, region, 0.25, torch.Generator().manual_seed(1))
    assert torch.equal(out[..., :, :8], x[..., :, :8])  # outside: untouched, bit for bit
    assert not torch.equal(out[..., :, 8:], x[..., :, 8:]) and out.min() >= 0 and out.max() <= 1
    again = noisy_in(x, region, 0.25, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


class NoisyLogits(torch.nn.Module):
    """A randomised model (fresh noise on every sample's logits): EOT draws then differ."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x + 0.05 * torch.randn_like(x))


def one_draw_at_a_time(attack, x, y, eot):
    """The EOT gradient as a loop over draws, one forward pass each (the reference)."""
    grad = torch.zeros_like(x)
    for _ in range(eot):
        x_ = x.detach().requires_grad_(True)
        grad += torch.autograd.grad(attack.loss(attack.model(x_), y, None).sum(), x_)[0]
    return grad / eot


@pytest.mark.parametrize("elements", [2**24, 3 * 6 * 64 * 64, 0])  # one pass; passes of 3, 3, 1; one per draw
def test_stacked_eot_draws_equal_one_draw_at_a_time(trained_lenet, test_batch, monkeypatch, elements):
    import benchmark.attacks.apgd as apgd

    monkeypatch.setattr(apgd, "EOT_ELEMENTS", {"cpu": elements, "accelerator": 2**24})  # a GPU's way, on the CPU
    x, y = test_batch.x[:6], test_batch.y[:6]
    attack = ATTACKS.get("apgd-ce")(trained_lenet, eps=0.2, steps=2, eot=7, num_classes=10)
    loss, logits, grad = attack._grad(x, y, None)
    torch.testing.assert_close(grad, one_draw_at_a_time(attack, x, y, 7), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(logits, trained_lenet(x), rtol=1e-5, atol=1e-6)
    noisy = ATTACKS.get("apgd-ce")(NoisyLogits(trained_lenet), eps=0.2, steps=2, eot=7, num_classes=10)
    torch.manual_seed(0)
    draws = noisy._grad(x, y, None)[2]
    torch.manual_seed(0)
    one = ATTACKS.get("apgd-ce")(NoisyLogits(trained_lenet), eps=0.2, steps=2, eot=1, num_classes=10)
    single = one._grad(x, y, None)[2]
    assert not torch.allclose(draws, single)  # seven independent draws averaged, not one draw seven times
