"""Classifiers as encoder + head, with normalisation inside the model; the model is a config choice.

Inputs are always images in [0,1]; `embed(x)` gives the embedding z and `head(z)` the logits, so
methods can act between the two (H-SPLID masks z) and attacks never see normalised tensors. Which
encoder, with which options and starting weights, is the `model` section of a run's config
(`ModelConfig`); a dataset only proposes a default, as timm's `create_model` takes a name.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn

from benchmark.data.split import DataInfo
from benchmark.errors import ConfigError, DataError
from benchmark.registry import ENCODERS


@dataclass
class ModelConfig:
    """The `model` section: an encoder from `benchmark list encoders`, its options, and the weights
    it starts from (a torchvision weight name such as IMAGENET1K_V2 for the ResNets, or a file)."""

    encoder: str = "lenet3"
    weights: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        builder = ENCODERS.get(self.encoder)
        accepted = inspect.signature(builder).parameters
        unknown = [k for k in self.options if k not in accepted or k in ("info", "weights")]
        if unknown:
            known = [k for k in accepted if k not in ("info", "weights")]
            raise ConfigError(f"model.options: encoder {self.encoder!r} has no option {unknown[0]!r}; "
                              f"known: {', '.join(known) or '(none)'}")


def create_encoder(name: str, info: DataInfo, *, weights: str | None = None, **options: Any) -> "Encoder":
    """Encoder `name` for a dataset's input shape and classes. `weights`: encoders that take a
    `weights` argument interpret it themselves (torchvision names or files); others load a state
    dict of their own layout from a file."""
    builder = ENCODERS.get(name)
    if "weights" in inspect.signature(builder).parameters:
        return builder(info, weights=weights, **options)
    encoder = builder(info, **options)
    if weights:
        load_encoder_file(encoder, Path(weights), name)
    return encoder


def load_encoder_file(encoder: nn.Module, path: Path, name: str) -> None:
    if not path.is_file():
        raise DataError(f"model.weights file {str(path)!r} not found (encoder {name!r} reads a state dict file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        encoder.load_state_dict(state.get("state_dict", state))
    except Exception as err:
        raise DataError(f"model.weights {str(path)!r} do not fit encoder {name!r} ({type(err).__name__})") from None


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

    mean: Tensor
    std: Tensor

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


def build_model_encoder(model: ModelConfig, info: DataInfo) -> Encoder:
    """The encoder a run's `model` section asks for."""
    return create_encoder(model.encoder, info, weights=model.weights, **model.options)


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
