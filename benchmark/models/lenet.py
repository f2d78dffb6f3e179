"""LeNet-3 of the H-SPLID reference code, for C-MNIST."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from benchmark.data.split import DataInfo
from benchmark.models import Encoder
from benchmark.registry import ENCODERS


class LeNet3(Encoder):
    """Two 5x5 conv blocks and a 1024-d fully connected embedding (taken before its ReLU)."""

    hidden_layers = ("features.pool1", "features.pool2", "features.fc1")
    cam_layer = "features.relu2"  # Grad-CAM on the last conv block's activations

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int, embed_dim: int = 1024):
        super().__init__()
        self.embed_dim = embed_dim
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, 32, 5, padding=2),
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(32, 64, 5, padding=2),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
                flatten=nn.Flatten(),
                fc1=nn.Linear(64 * (height // 4) * (width // 4), embed_dim),
            )
        )
        # The reference applies the ReLU after the (masked) embedding, inside the head.
        self.classifier = nn.Sequential(OrderedDict(relu=nn.ReLU(), fc2=nn.Linear(embed_dim, num_classes)))


@ENCODERS.register("lenet3")
def lenet3(info: DataInfo, embed_dim: int = 1024) -> LeNet3:
    """LeNet-3 (conv 32, conv 64, fc 1024): the C-MNIST encoder of H-SPLID."""
    c, h, w = info.input_shape
    return LeNet3(c, h, w, info.num_classes, embed_dim)
