"""Captum's gradient and perturbation attributions behind the Explainer call shape.

Pitfalls handled here: Captum never switches to eval mode (the base class refuses a training
model); Integrated Gradients, SmoothGrad and Occlusion run on internal batches of a bounded size;
SmoothGrad's noise is 0.15 of the input range, here [0,1]; Grad-CAM is ReLU'd and upsampled to the
image; the baseline of Integrated Gradients, DeepLift and Occlusion is the black image (0 in the
[0,1] space, before the model's normalisation).
"""

from __future__ import annotations

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

from ..registry import EXPLAINERS
from . import Explainer
from .hookable import hookable_copy


def cam_layer(model: nn.Module) -> nn.Module:
    """The encoder's declared `cam_layer`, else the model's last convolution."""
    name = getattr(getattr(model, "encoder", None), "cam_layer", None)
    if name:
        return dict(model.encoder.named_modules())[name]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("grad_cam needs a convolution layer (or an encoder `cam_layer`)")
    return convs[-1]


@EXPLAINERS.register("saliency")
class SaliencyMap(Explainer):
    """Saliency (Simonyan et al. 2014): |d logit_c / dx|."""

    def attribute(self, model, x, target, generator):
        return Saliency(model).attribute(x, target=target, abs=True)


@EXPLAINERS.register("input_x_gradient")
class InputTimesGradient(Explainer):
    """Input x gradient (Shrikumar et al. 2016): x * d logit_c / dx."""

    def attribute(self, model, x, target, generator):
        return InputXGradient(model).attribute(x, target=target)


@EXPLAINERS.register("integrated_gradients")
class IntegratedGradientsMap(Explainer):
    """Integrated Gradients (Sundararajan et al. 2017) from the black image, Gauss-Legendre steps."""

    @classmethod
    def defaults(cls):
        return {"n_steps": 32, "internal_batch_size": 512}

    def attribute(self, model, x, target, generator):
        o = self.options
        return IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                    n_steps=o["n_steps"], internal_batch_size=o["internal_batch_size"])


@EXPLAINERS.register("smoothgrad")
class SmoothGrad(Explainer):
    """SmoothGrad (Smilkov et al. 2017): saliency averaged over Gaussian noise of 0.15 x the input range."""

    @classmethod
    def defaults(cls):
        return {"samples": 16, "noise_fraction": 0.15, "batch_size": 8}

    def attribute(self, model, x, target, generator):
        o = self.options
        # NoiseTunnel draws its noise from the global RNG: fork it, seeded from our generator.
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return NoiseTunnel(Saliency(model)).attribute(
                x, nt_type="smoothgrad", nt_samples=o["samples"], nt_samples_batch_size=o["batch_size"],
                stdevs=o["noise_fraction"] * 1.0, target=target, abs=True)


class ModuleHookingExplainer(Explainer):
    """An explainer that hooks the model's modules: it runs on `hookable_copy` of the model (made
    once per model), so a ReLU reused by a ResNet block or applied in place explains correctly."""

    def __init__(self, **options):
        super().__init__(**options)
        self._copy: tuple[nn.Module, nn.Module] | None = None

    def hookable(self, model: nn.Module, x: torch.Tensor) -> nn.Module:
        if self._copy is None or self._copy[0] is not model:
            self._copy = (model, hookable_copy(model, x[:1].detach()))
        return self._copy[1]


@EXPLAINERS.register("guided_backprop")
class GuidedBackpropMap(ModuleHookingExplainer):
    """Guided Backpropagation (Springenberg et al. 2015); overrides nn.ReLU modules only."""

    def attribute(self, model, x, target, generator):
        return GuidedBackprop(self.hookable(model, x)).attribute(x, target=target)


@EXPLAINERS.register("grad_cam")
class GradCam(Explainer):
    """Grad-CAM (Selvaraju et al. 2017) on the last conv layer, ReLU'd, bilinearly upsampled."""

    def attribute(self, model, x, target, generator):
        cam = LayerGradCam(model, cam_layer(model)).attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear").clamp_min(0)


@EXPLAINERS.register("deeplift")
class DeepLiftMap(ModuleHookingExplainer):
    """DeepLIFT (Shrikumar et al. 2017), rescale rule, black-image baseline."""

    def attribute(self, model, x, target, generator):
        return DeepLift(self.hookable(model, x)).attribute(x, baselines=torch.zeros_like(x), target=target)


@EXPLAINERS.register("occlusion")
class OcclusionMap(Explainer):
    """Occlusion (Zeiler and Fergus 2014): logit drop when a black square window covers each pixel."""

    @classmethod
    def defaults(cls):
        return {"window": 8, "stride": 4, "perturbations_per_eval": 8}

    def attribute(self, model, x, target, generator):
        o = self.options
        c = x.shape[1]
        return Occlusion(model).attribute(x, sliding_window_shapes=(c, o["window"], o["window"]),
                                          strides=(c, o["stride"], o["stride"]), baselines=0.0, target=target,
                                          perturbations_per_eval=o["perturbations_per_eval"])
