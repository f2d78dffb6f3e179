"""L1 activations: cross-entropy + lambda * sum over the batch of the absolute embedding values.

A sparsity baseline of the H-SPLID paper (section 7 of its baselines). The activations are the
embedding z (LeNet's fc1 output, ResNet's pooled features). C-MNIST has no published strength; it
uses the COCO value (the other from-scratch setting), this project's choice.
"""

from benchmark.losses.penalties import l1_activations
from benchmark.method import PenalisedMethod, method_presets
from benchmark.registry import METHODS


@METHODS.register("l1_activations")
class L1Activations(PenalisedMethod):
    """L1 activations: cross-entropy + lambda * sum over the batch of |z| (COCO 1e-6, ImageNet 1e-4)."""

    term = "l1_activations"
    presets = method_presets(coco_animals={"strength": 1e-6}, in9={"strength": 1e-4},
                             cmnist={"strength": 1e-6})

    def penalty(self, model, z):
        return l1_activations(z)
