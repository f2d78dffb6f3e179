"""L1 weights: cross-entropy + lambda * the L1 norm of every convolution and linear weight.

A sparsity baseline of the H-SPLID paper (section 7 of its baselines). Biases and BatchNorm
parameters are not penalised. C-MNIST has no published strength; it uses the COCO value (the
other from-scratch setting), this project's choice.
"""

from benchmark.losses.penalties import l1_weights
from benchmark.method import PenalisedMethod, method_presets
from benchmark.registry import METHODS


@METHODS.register("l1_weights")
class L1Weights(PenalisedMethod):
    """L1 weights: cross-entropy + lambda * sum of |W| over conv and linear weights (COCO 1e-5, ImageNet 1e-6)."""

    term = "l1_weights"
    presets = method_presets(coco_animals={"strength": 1e-5}, in9={"strength": 1e-6},
                             cmnist={"strength": 1e-5})

    def penalty(self, model, z):
        return l1_weights(model)
