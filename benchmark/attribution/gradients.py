"""Captum's gradient and perturbation attributions behind the Explainer call shape.

Pitfalls handled here: Captum never switches to eval mode (the base class refuses a training
model); Integrated Gradients, SmoothGrad and Occlusion run on internal batches of a bounded size;
SmoothGrad's noise is 0.15 of the input range, here [0,1]; Grad-CAM is ReLU'd and upsampled to the
image; the baseline of Integrated Gradients, DeepLift and Occlusion is the black image (0 in the
[0,1] space, before the model's normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import (
    DeepLift,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from benchmark.attribution import Explainer
from benchmark.attribution.hookable import hookable_copy
from benchmark.errors import ConfigError
from benchmark.registry import EXPLAINERS


def cam_layer(model: nn.Module) -> nn.Module:
    """The encoder's declared `cam_layer`, else the model's last convolution."""
    encoder = getattr(model, "encoder", None)
    name = getattr(encoder, "cam_layer", None)
    if isinstance(encoder, nn.Module) and name:
        return dict(encoder.named_modules())[name]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("grad_cam needs a convolution layer (or an encoder `cam_layer`)")
    return convs[-1]


def positive(params: object, name: str, *keys: str) -> None:
    """Refuse values below 1 for the listed integer options of an explainer's settings."""
    for key in keys:
        if getattr(params, key) < 1:
            raise ConfigError(f"{name}'s {key} must be >= 1, got {getattr(params, key)}")


@EXPLAINERS.register("saliency")
class SaliencyMap(Explainer):
    """Saliency (Simonyan et al. 2014): |d logit_c / dx|."""

    def attribute(self, x, target, generator):
        return Saliency(self.model).attribute(x, target=target, abs=True)


@EXPLAINERS.register("input_x_gradient")
class InputTimesGradient(Explainer):
    """Input x gradient (Shrikumar et al. 2016): x * d logit_c / dx."""

    def attribute(self, x, target, generator):
        return InputXGradient(self.model).attribute(x, target=target)


@dataclass
class IntegratedGradientsParams:
    n_steps: int = 32
    internal_batch_size: int = 512

    def __post_init__(self) -> None:
        positive(self, "integrated_gradients", "n_steps", "internal_batch_size")


@EXPLAINERS.register("integrated_gradients")
class IntegratedGradientsMap(Explainer):
    """Integrated Gradients (Sundararajan et al. 2017) from the black image, Gauss-Legendre steps."""

    Params = IntegratedGradientsParams

    def attribute(self, x, target, generator):
        p = self.params
        return IntegratedGradients(self.model).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                         n_steps=p.n_steps, internal_batch_size=p.internal_batch_size)


@dataclass
class SmoothGradParams:
    samples: int = 16
    noise_fraction: float = 0.15  # noise standard deviation as a share of the input range [0, 1]
    batch_size: int = 8

    def __post_init__(self) -> None:
        positive(self, "smoothgrad", "samples", "batch_size")
        if not self.noise_fraction >= 0:
            raise ConfigError(f"smoothgrad's noise_fraction must be >= 0, got {self.noise_fraction}")


@EXPLAINERS.register("smoothgrad")
class SmoothGrad(Explainer):
    """SmoothGrad (Smilkov et al. 2017): saliency averaged over Gaussian noise of 0.15 x the input range."""

    Params = SmoothGradParams

    def attribute(self, x, target, generator):
        p = self.params
        # NoiseTunnel draws its noise from the global RNG: fork it, seeded from our generator.
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return NoiseTunnel(Saliency(self.model)).attribute(
                x, nt_type="smoothgrad", nt_samples=p.samples, nt_samples_batch_size=p.batch_size,
                stdevs=p.noise_fraction * 1.0, target=target, abs=True)


class ModuleHookingExplainer(Explainer):
    """An explainer that hooks the model's modules: it runs on `hookable_copy` of its model (made
    at the first call), so a ReLU reused by a ResNet block or applied in place explains correctly."""

    _copy: nn.Module | None = None

    def hookable(self, x: torch.Tensor) -> nn.Module:
        if self._copy is None:
            self._copy = hookable_copy(self.model, x[:1].detach())
        return self._copy


@EXPLAINERS.register("guided_backprop")
class GuidedBackpropMap(ModuleHookingExplainer):
    """Guided Backpropagation (Springenberg et al. 2015); overrides nn.ReLU modules only."""

    def attribute(self, x, target, generator):
        return GuidedBackprop(self.hookable(x)).attribute(x, target=target)


@EXPLAINERS.register("grad_cam")
class GradCam(Explainer):
    """Grad-CAM (Selvaraju et al. 2017) on the last conv layer, ReLU'd, bilinearly upsampled."""

    def attribute(self, x, target, generator):
        cam = LayerGradCam(self.model, cam_layer(self.model)).attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear").clamp_min(0)


@EXPLAINERS.register("deeplift")
class DeepLiftMap(ModuleHookingExplainer):
    """DeepLIFT (Shrikumar et al. 2017), rescale rule, black-image baseline."""

    def attribute(self, x, target, generator):
        return DeepLift(self.hookable(x)).attribute(x, baselines=torch.zeros_like(x), target=target)


@dataclass
class OcclusionParams:
    window: int = 8
    stride: int = 4
    perturbations_per_eval: int = 8

    def __post_init__(self) -> None:
        positive(self, "occlusion", "window", "stride", "perturbations_per_eval")


@EXPLAINERS.register("occlusion")
class OcclusionMap(Explainer):
    """Occlusion (Zeiler and Fergus 2014): logit drop when a black square window covers each pixel."""

    Params = OcclusionParams

    def attribute(self, x, target, generator):
        p = self.params
        c = x.shape[1]
        return Occlusion(self.model).attribute(x, sliding_window_shapes=(c, p.window, p.window),
                                               strides=(c, p.stride, p.stride), baselines=0.0, target=target,
                                               perturbations_per_eval=p.perturbations_per_eval)
