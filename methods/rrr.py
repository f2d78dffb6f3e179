"""Right for the Right Reasons (Ross, Hughes and Doshi-Velez, IJCAI 2017).

    CE + strength * mean over the batch of sum over pixels of ((1 - m) * d/dx sum_k log p_k(x))^2

The object mask m (1 = object) marks where the model may look; input gradients of the summed
log-probabilities elsewhere are penalised, which needs a double backward pass. Differences from
the paper, on purpose: the gradient is taken with respect to the [0,1] image (the space attacks
work in), and the penalty is averaged over the batch like the cross-entropy (Ross et al. sum it,
so their lambda equals ours times the batch size). Ross et al. also add an L2 weight penalty;
combine with `weight_decay` settings of the optimiser if wanted, it is not part of this term.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.data.split import Batch
from benchmark.errors import ConfigError
from benchmark.method import Method, StepOutput, TrainState
from benchmark.models import Classifier
from benchmark.registry import METHODS


@dataclass
class RRRParams:
    strength: float = 0.1  # lambda_1 of Ross et al. (per sample, see the module docstring)

    def __post_init__(self) -> None:
        if not self.strength >= 0:
            raise ConfigError(f"method.strength must be >= 0, got {self.strength}")


def right_reasons_penalty(logits: Tensor, x: Tensor, mask: Tensor) -> Tensor:
    """Mean over samples of the squared input gradient of sum_k log p_k outside the mask.

    `x` must be the leaf the logits were computed from (requires_grad); the graph is kept so the
    penalty can be minimised."""
    log_probs = F.log_softmax(logits, dim=1).sum()
    grad = torch.autograd.grad(log_probs, x, create_graph=True)[0]
    return ((1.0 - mask) * grad).pow(2).flatten(1).sum(1).mean()


@METHODS.register("rrr")
class RightForTheRightReasons(Method[RRRParams]):
    """Right for the Right Reasons (Ross et al. 2017): penalise input gradients outside the object mask."""

    Params = RRRParams
    grids = {"strength": {"method.strength": [0.01, 0.1, 1.0, 10.0]}}

    def training_step(self, model: Classifier, batch: Batch, state: TrainState) -> StepOutput:
        x = batch.x.detach().requires_grad_(True)
        logits = model(x)
        penalty = right_reasons_penalty(logits, x, batch.mask)
        return StepOutput({"ce": self.cross_entropy(logits, batch.y, state),
                           "right_reasons": self.params.strength * penalty}, logits)
