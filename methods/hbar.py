"""HBaR (Wang et al., NeurIPS 2021): the HSIC bottleneck as a regulariser of every hidden layer.

    CE + sum over hidden layers h_l of [ lambda_x * nHSIC(X, h_l) - lambda_y * nHSIC(Y, h_l) ]

Each layer should forget the input and keep the label. The hidden layers are those the encoder
declares (`Encoder.hidden_layers`: LeNet's two pooled conv blocks and fc1; ResNet's stem, four
stages and pooled features). nHSIC is the same NOCCO estimator as H-SPLID's (`benchmark.losses.hsic`),
with Gaussian kernels of bandwidth sigma on X (the [0,1] image) and h_l, and the one-hot label
kernel on Y. Presets are the H-SPLID paper's configurations (its Table 10 lists them swapped).
"""

from dataclasses import dataclass

from torch import Tensor

from benchmark.data.split import Batch
from benchmark.errors import ConfigError
from benchmark.losses.hsic import gaussian_kernel, label_kernel, nhsic_from_operators, normalised_operator
from benchmark.method import Method, StepOutput, TrainState, method_presets
from benchmark.models import Classifier, capture
from benchmark.registry import METHODS


@dataclass
class HBaRParams:
    lambda_x: float = 0.001  # weight on nHSIC(X, h_l): forget the input
    lambda_y: float = 0.1  # weight on nHSIC(Y, h_l): keep the label
    sigma: float = 5.0
    hsic_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.lambda_x < 0 or self.lambda_y < 0:
            raise ConfigError("method.lambda_x and method.lambda_y must be >= 0")
        if self.sigma <= 0 or self.hsic_eps <= 0:
            raise ConfigError("method.sigma and method.hsic_eps must be > 0")


# H-SPLID paper's configurations; C-MNIST has none published and uses COCO's (this project's choice).
PRESETS = method_presets(
    coco_animals=dict(lambda_x=0.001, lambda_y=0.1, sigma=5.0),
    isic2017=dict(lambda_x=0.001, lambda_y=0.1, sigma=5.0),
    in9=dict(lambda_x=0.005, lambda_y=0.05, sigma=5.0),
    cmnist=dict(lambda_x=0.001, lambda_y=0.1, sigma=5.0),
)


def hbar_terms(x: Tensor, y: Tensor, hidden: list[Tensor], num_classes: int, sigma: float,
               eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """(sum_l nHSIC(X, h_l), sum_l nHSIC(Y, h_l)), the operators of X and Y computed once."""
    r_x = normalised_operator(gaussian_kernel(x, sigma), eps)
    r_y = normalised_operator(label_kernel(y, num_classes, x.dtype), eps)
    with_x, with_y = x.new_zeros(()), x.new_zeros(())
    for h in hidden:
        r_h = normalised_operator(gaussian_kernel(h, sigma), eps)
        with_x = with_x + nhsic_from_operators(r_x, r_h)
        with_y = with_y + nhsic_from_operators(r_y, r_h)
    return with_x, with_y


@METHODS.register("hbar")
class HBaR(Method[HBaRParams]):
    """HBaR: cross-entropy + per hidden layer lambda_x nHSIC(X, h) - lambda_y nHSIC(Y, h) (Wang et al. 2021)."""

    Params = HBaRParams
    presets = PRESETS
    grids = {"published": {"method.lambda_x": [0.001, 0.005], "method.lambda_y": [0.05, 0.1]}}

    def training_step(self, model: Classifier, batch: Batch, state: TrainState) -> StepOutput:
        p = self.params
        layers = model.hidden_layers
        if not layers:
            raise ConfigError("hbar needs an encoder that declares hidden_layers")
        with capture(model, layers) as hidden:
            logits = model(batch.x)
        with_x, with_y = hbar_terms(batch.x, batch.y, [hidden[n] for n in layers], self.info.num_classes,
                                    p.sigma, p.hsic_eps)
        return StepOutput({"ce": self.cross_entropy(logits, batch.y, state), "hsic_x_hidden": p.lambda_x * with_x,
                           "hsic_y_hidden": -p.lambda_y * with_y}, logits)
