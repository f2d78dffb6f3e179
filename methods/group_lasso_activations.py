"""Group lasso activations: cross-entropy + lambda * sum over the batch of each sample's L2 norm of z.

A sparsity baseline of the H-SPLID paper (section 7 of its baselines). C-MNIST has no published
strength; it uses the COCO value (the other from-scratch setting), this project's choice.
"""

from benchmark.losses.penalties import group_lasso_activations
from benchmark.method import PenalisedMethod, method_presets
from benchmark.registry import METHODS


@METHODS.register("group_lasso_activations")
class GroupLassoActivations(PenalisedMethod):
    """Group lasso activations: cross-entropy + lambda * sum over the batch of ||z_i||_2 (COCO 1e-5, ImageNet 1e-4)."""

    term = "group_lasso_activations"
    presets = method_presets(coco_animals={"strength": 1e-5}, in9={"strength": 1e-4},
                             cmnist={"strength": 1e-5})

    def penalty(self, model, z):
        return group_lasso_activations(z)
