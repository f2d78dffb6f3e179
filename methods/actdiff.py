"""ActDiff (after Viviano et al., ICLR 2021, "Saliency is a possible red herring when diagnosing
poor generalization"): make the representation ignore everything outside the object mask.

    CE(f(x), y) + strength * mean over the batch of ||z(x) - z(x * m)||_2^2

z is the embedding (the encoder's output before the head) and x * m the image with every pixel
outside the object mask set to 0. The model sees the real image for its prediction, and learns
to map it to the same representation as the object alone. This project's form: one
representation (the embedding) rather than several layers, zero fill for the removed pixels, and
no gradient stopped on either branch.
"""

from dataclasses import dataclass

from benchmark.data.split import Batch
from benchmark.errors import ConfigError
from benchmark.method import Method, StepOutput, TrainState
from benchmark.models import Classifier
from benchmark.registry import METHODS


@dataclass
class ActDiffParams:
    strength: float = 0.01

    def __post_init__(self) -> None:
        if not self.strength >= 0:
            raise ConfigError(f"method.strength must be >= 0, got {self.strength}")


@METHODS.register("actdiff")
class ActDiff(Method[ActDiffParams]):
    """ActDiff (Viviano et al. 2021): match the embedding of the image and of its object alone."""

    Params = ActDiffParams
    grids = {"strength": {"method.strength": [0.001, 0.01, 0.1, 1.0]}}

    def training_step(self, model: Classifier, batch: Batch, state: TrainState) -> StepOutput:
        z = model.embed(batch.x)
        z_object = model.embed(batch.x * batch.mask)
        logits = model.head(z)
        distance = (z - z_object).pow(2).flatten(1).sum(1).mean()
        return StepOutput({"ce": self.cross_entropy(logits, batch.y, state),
                           "activation_difference": self.params.strength * distance}, logits)
