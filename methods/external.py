"""Models trained elsewhere: the method name of a `benchmark evaluate` run (never trained here)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from benchmark.errors import ConfigError
from benchmark.method import Method
from benchmark.models import Classifier, Encoder
from benchmark.registry import METHODS

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$")


@dataclass
class ExternalParams:
    name: str = "external"  # what rows, file names and the leaderboard call the model
    source: str = ""  # where the model came from: its spec and weights file, or the Python class

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise ConfigError(f"model name {self.name!r}: expected letters, digits and _ . + - (e.g. resnet50-robust)")
        if self.name != "external" and self.name in METHODS:
            raise ConfigError(f"model name {self.name!r} is a training method's name; pick another, so its rows "
                              "never mix with that method's")


@METHODS.register("external")
class External(Method[ExternalParams]):
    """A model trained elsewhere, evaluated as given by `benchmark evaluate` (it is never trained here)."""

    Params = ExternalParams

    @classmethod
    def check(cls, params: ExternalParams, train) -> None:
        if train.epochs:
            raise ConfigError("method 'external' is a model trained elsewhere: `benchmark evaluate` scores it, "
                              "nothing trains it (train.epochs must be 0)")

    def build_model(self, encoder: Encoder) -> Classifier:
        if not hasattr(encoder, "mean") or not hasattr(encoder, "std"):
            raise ConfigError("method 'external' evaluates model.encoder=external (benchmark evaluate --model SPEC)")
        return Classifier(encoder, getattr(encoder, "mean"), getattr(encoder, "std"))
