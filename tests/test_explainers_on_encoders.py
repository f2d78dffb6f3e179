"""Every explainer on every encoder the project builds (LeNet-3, ResNet-18 with and without
BatchNorm, ResNet-50), DeepLIFT's completeness, and Guided Backprop against a hand-written rule.

torchvision's ResNet blocks call one in-place `ReLU` module two or three times per forward pass;
Captum's DeepLIFT keeps one input per module and refused them. The module-hooking explainers run
on `hookable_copy`, which must compute exactly the evaluated model's function.
"""

import warnings

import pytest
import torch
from captum.attr import DeepLift
from torch import nn

from benchmark.attribution.hookable import calls_per_module, hookable_copy
from benchmark.data.split import DataInfo
from benchmark.models import Classifier, create_encoder
from benchmark.registry import EXPLAINERS
from benchmark.suites.attribution import BUILTIN_EXPLAINERS

ENCODERS = {"lenet3": ("lenet3", {}, 1), "resnet18": ("resnet18", {}, 3),
            "resnet18_no_bn": ("resnet18", {"batch_norm": False}, 3), "resnet50": ("resnet50", {}, 3)}
LIGHT = {"integrated_gradients": {"n_steps": 4}, "smoothgrad": {"samples": 2},
         "occlusion": {"window": 8, "stride": 8}, "pixel_mask": {"iterations": 2, "noise_draws": 1}}


def model_for(key: str, dtype=torch.float32) -> tuple[Classifier, torch.Tensor]:
    name, args, channels = ENCODERS[key]
    info = DataInfo(4, tuple("abcd"), (channels, 32, 32), (0.5,) * channels, (0.25,) * channels)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = Classifier(create_encoder(name, info, **args), info.mean, info.std).eval().to(dtype)
        x = torch.rand(3, channels, 32, 32, dtype=dtype)
    return model, x


@pytest.fixture(scope="module", params=list(ENCODERS))
def encoder(request):
    return model_for(request.param)


def test_every_explainer_runs_on_every_encoder_and_leaves_the_model_alone(encoder):
    model, x = encoder
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modules = [type(m) for m in model.modules()]
    target = torch.tensor([0, 1, 2])
    for name in BUILTIN_EXPLAINERS:
        a = EXPLAINERS.get(name)(model, **LIGHT.get(name, {}))(x, target, torch.Generator().manual_seed(0))
        assert a.shape[0] == 3 and a.shape[-2:] == x.shape[-2:] and torch.isfinite(a).all(), name
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [type(m) for m in model.modules()] == modules  # no module swapped in the evaluated model
    assert not any(getattr(m, "_forward_hooks", None) for m in model.modules())


def test_hookable_copy_computes_the_same_function_with_each_call_site_its_own_module(encoder):
    model, x = encoder
    twin = hookable_copy(model, x[:1])
    assert torch.equal(model(x), twin(x))
    counts = calls_per_module(twin, x[:1])
    assert all(n == 1 for m, n in counts.items() if isinstance(m, (nn.ReLU, nn.MaxPool2d)))
    assert not any(getattr(m, "inplace", False) for m in twin.modules())
    original = calls_per_module(model, x[:1])
    reuses = any(n > 1 for m, n in original.items() if isinstance(m, nn.ReLU))
    assert reuses == (model.encoder.cam_layer == "features.layer4")  # the ResNets reuse their ReLUs


def swap_max_pools(model: nn.Module) -> nn.Module:
    """Average pools in place of max pools: the only layers where Captum's DeepLIFT rule is not exact."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(module, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
    return model


@pytest.mark.parametrize("key", list(ENCODERS))
def test_deeplift_is_complete_except_for_the_max_pool_rule(key):
    """Attributions sum to f(x) - f(0) for the target logit (DeepLIFT's summation-to-delta) on
    every encoder once its max pools are average pools; with max pools, Captum's max-pool rule
    (docs/METRICS.md) gives up exactness, as documented."""
    model, x = model_for(key, torch.float64)
    target = torch.tensor([0, 1, 2])

    def gap(m):
        a = EXPLAINERS.get("deeplift")(m)(x, target, torch.Generator())
        with torch.no_grad():
            delta = (m(x) - m(torch.zeros_like(x))).gather(1, target.view(-1, 1)).squeeze(1)
        return (a.flatten(1).sum(1) - delta).abs().max().item(), delta.abs().max().item()

    with_max, scale = gap(model)
    exact, _ = gap(swap_max_pools(model))
    assert exact < 1e-9 * max(scale, 1.0)
    assert 1e-6 < with_max < float("inf")  # the documented exception


def test_deeplift_convergence_delta_matches_our_sum_on_the_hookable_copy():
    model, x = model_for("resnet18", torch.float64)
    twin = hookable_copy(model, x[:1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, delta = DeepLift(twin).attribute(x.clone().requires_grad_(), baselines=torch.zeros_like(x),
                                            target=torch.tensor([0, 1, 2]), return_convergence_delta=True)
    ours = EXPLAINERS.get("deeplift")(model)(x, torch.tensor([0, 1, 2]), torch.Generator())
    torch.testing.assert_close(ours, a.detach())


class GuidedReLU(torch.autograd.Function):
    """ReLU whose backward pass lets through only positive gradients at positive inputs."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp_min(0) * (x > 0)


class GuidedReLUModule(nn.Module):
    def forward(self, x):
        return GuidedReLU.apply(x)


@pytest.mark.parametrize("key", ["resnet18", "resnet50"])
def test_guided_backprop_equals_the_guided_relu_rule_on_resnets(key):
    model, x = model_for(key, torch.float64)
    target = torch.tensor([0, 1, 2])
    ours = EXPLAINERS.get("guided_backprop")(model)(x, target, torch.Generator())
    reference = hookable_copy(model, x[:1])
    for module in list(reference.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, name, GuidedReLUModule())
    leaf = x.clone().requires_grad_(True)
    expected = torch.autograd.grad(reference(leaf).gather(1, target.view(-1, 1)).sum(), leaf)[0]
    torch.testing.assert_close(ours, expected)
