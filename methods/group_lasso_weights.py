"""Group lasso weights: cross-entropy + lambda * sum of per-filter / per-row L2 norms.

A sparsity baseline of the H-SPLID paper (section 7 of its baselines). C-MNIST has no published
strength; it uses the COCO value (the other from-scratch setting), this project's choice.
"""

from benchmark.losses.penalties import group_lasso_weights
from benchmark.method import PenalisedMethod, method_presets
from benchmark.registry import METHODS


@METHODS.register("group_lasso_weights")
class GroupLassoWeights(PenalisedMethod):
    """Group lasso weights: cross-entropy + lambda * sum of per-filter / per-row L2 norms (COCO 1e-3, ImageNet 1e-5)."""

    term = "group_lasso_weights"
    presets = method_presets(coco_animals={"strength": 1e-3}, in9={"strength": 1e-5},
                             cmnist={"strength": 1e-3})

    def penalty(self, model, z):
        return group_lasso_weights(model)
