"""Weight decay: Adam's coupled L2 penalty, the simplest regulariser of the paper's baselines."""

from dataclasses import dataclass

import torch

from benchmark.config import TrainConfig
from benchmark.errors import ConfigError
from benchmark.method import Method, method_presets
from benchmark.models import Classifier
from benchmark.registry import METHODS

# Coefficients of the paper's baseline runs (H-SPLID, Table 9 / released configs). C-MNIST has no
# published value; 1e-3 is this project's choice, as for COCO (the other from-scratch setting).
PRESETS = method_presets(coco_animals={"weight_decay": 1e-3}, isic2017={"weight_decay": 1e-4},
                         in9={"weight_decay": 1e-5}, cmnist={"weight_decay": 1e-3})


@dataclass
class WeightDecayParams:
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        if not self.weight_decay >= 0:
            raise ConfigError(f"method.weight_decay must be >= 0, got {self.weight_decay}")


@METHODS.register("weight_decay")
class WeightDecay(Method[WeightDecayParams]):
    """Cross-entropy with Adam's coupled weight decay (COCO 1e-3, ISIC 1e-4, ImageNet 1e-5)."""

    Params = WeightDecayParams
    stackable = True  # tests/test_stacked.py
    presets = PRESETS
    grids = {"paper": {"method.weight_decay": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]}}  # paper Table 8

    def optimizer(self, model: Classifier, train: TrainConfig) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=train.lr, betas=train.adam_betas, eps=train.adam_eps,
                                weight_decay=self.params.weight_decay)
