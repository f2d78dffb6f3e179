"""Classifiers as encoder + head, with normalisation inside the model.

Inputs are always images in [0,1]; `embed(x)` gives the embedding z and `head(z)` the logits, so
methods can act between the two (H-SPLID masks z) and attacks never see normalised tensors.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from ..data import DataInfo
from ..registry import ENCODERS


class Encoder(nn.Module):
    """`features` maps a normalised image to z (embed_dim); `classifier` maps z to logits.

    `hidden_layers` names the submodules whose outputs are the hidden representations a method
    may regularise (HBaR), relative to the encoder; `cam_layer` the one Grad-CAM explains.
    """

    features: nn.Module
    classifier: nn.Module
    embed_dim: int
    hidden_layers: tuple[str, ...] = ()
    cam_layer: str | None = None  # Grad-CAM's layer, relative to the encoder (None: the last Conv2d)


class Classifier(nn.Module):
    """An encoder behind a fixed normalisation; forward(x) = head(embed(x)) on x in [0,1]."""

    def __init__(self, encoder: Encoder, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def embed_dim(self) -> int:
        return self.encoder.embed_dim

    @property
    def hidden_layers(self) -> tuple[str, ...]:
        return tuple(f"encoder.{name}" for name in self.encoder.hidden_layers)

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def embed(self, x: Tensor) -> Tensor:
        return self.encoder.features(self.normalize(x))

    def head(self, z: Tensor) -> Tensor:
        return self.encoder.classifier(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))

    def views(self) -> dict[str, nn.Module]:
        """Alternative predictors over the same weights, scored as diagnostics (none by default)."""
        return {}


def build_encoder(info: DataInfo, name: str | None = None, **overrides) -> Encoder:
    """The dataset's default encoder (or `name`), built for its input shape and classes."""
    builder = ENCODERS.get(name or info.encoder)
    return builder(info, **{**info.encoder_args, **overrides})


@contextmanager
def capture(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Record the outputs of the named submodules during the forward passes inside the block."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise KeyError(f"no submodule named {', '.join(missing)}")
    outputs: dict[str, Tensor] = {}
    handles = [
        modules[n].register_forward_hook(lambda _m, _i, out, n=n: outputs.__setitem__(n, out)) for n in names
    ]
    try:
        yield outputs
    finally:
        for h in handles:
            h.remove()
