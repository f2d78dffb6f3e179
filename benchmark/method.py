"""The training-method contract. A method is one class registered in METHODS.

A method builds the model around an encoder, chooses the optimiser, computes the loss terms of
a training step (it runs its own forward pass, so it can read embeddings, hidden activations,
the object mask or input gradients), and may keep state updated per step and per epoch that is
saved in the checkpoint. The base class is plain cross-entropy training.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Iterator, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.config import TrainConfig
from benchmark.data.split import Batch, DataInfo, Split
from benchmark.distributed import World
from benchmark.errors import ConfigError
from benchmark.models import Classifier, Encoder


@dataclass
class TrainState:
    """Where training stands; handed to every hook of a method."""

    device: torch.device
    epochs: int
    samples_per_epoch: int
    batch_size: int
    train_split: Split
    train_indices: Tensor | None = None
    class_weights: Tensor | None = None
    generator: torch.Generator = field(default_factory=torch.Generator)
    epoch: int = 0
    step: int = 0
    samples_seen: int = 0  # over every rank
    world: World = field(default_factory=World)
    workers: int = 0  # decoding processes for file-backed splits
    decoder: str = "pil"  # where their JPEGs are decoded (train.decoder; data/device_decode.py)

    def clean_batches(self, fraction: float = 1.0) -> Iterator[Batch]:
        """Un-augmented training batches in a fixed order: the first ceil(fraction * N) samples
        (this rank's part of each when several processes train: sum what you compute over them
        with `world.sum`)."""
        from benchmark.data.loader import load_batches

        indices = self.train_indices if self.train_indices is not None else torch.arange(len(self.train_split))
        indices = indices[: math.ceil(fraction * len(indices))]
        yield from load_batches(self.train_split, indices, self.batch_size, workers=self.workers, device=self.device,
                                world=self.world, decoder=self.decoder)


@dataclass
class StepOutput:
    """The weighted loss terms of one step (summed for the backward pass) and the logits."""

    losses: dict[str, Tensor]
    logits: Tensor  # of this rank's samples
    # "local": each loss is a mean over this rank's samples; "global": computed on the batch of
    # every rank gathered (benchmark/distributed.py), the same on each rank.
    scope: str = "local"

    @property
    def loss(self) -> Tensor:
        return cast(Tensor, sum(self.losses.values()))  # Python's left-to-right sum: the order of the terms


P = TypeVar("P")
Grid = dict[str, list[Any]] | list[dict[str, Any]]  # a product of axes, or a list of points


class Method(Generic[P]):
    """Cross-entropy training with Adam: the base that every method extends.

    Generic in its `Params` dataclass, so `self.params` is typed in subclasses."""

    name: ClassVar[str] = ""
    Params: ClassVar[type | None] = None
    version: ClassVar[int] = 1  # bump when a change alters what training computes: old checkpoints go stale
    # Config layers per registered dataset name: {dataset: {section: {key: value}}}.
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    # Named hyperparameter grids for sweeps: {grid name: {"method.key": [values]}} (the product of
    # the lists) or {grid name: [{"method.key": value, ...}, ...]} (these points, e.g. an ablation).
    grids: ClassVar[dict[str, Grid]] = {}
    # Several seeds may train as one vmapped model (benchmark/engine/stacked.py): the training
    # step is a pure function of the parameters and the batch (no random draws, no Python
    # decisions on tensor values), no hook reads or changes the model during an epoch, and the
    # optimiser works elementwise. Set it only with a test that stacked seeds equal separate runs.
    stackable: ClassVar[bool] = False

    def __init__(self, params: P, info: DataInfo):
        self.params = params
        self.info = info

    @classmethod
    def defaults(cls, dataset: str, profile: str) -> dict[str, dict[str, Any]]:
        """Config overrides for this method on a dataset (its registered name) and profile: the
        dataset's preset by default."""
        return copy.deepcopy(cls.presets.get(dataset, {}))

    @classmethod
    def check(cls, params: Any, train: TrainConfig) -> None:
        """Refuse settings that only make sense together with the training settings (a one-line
        ConfigError while the configuration is resolved, before anything runs)."""

    def build_model(self, encoder: Encoder) -> Classifier:
        return Classifier(encoder, self.info.mean, self.info.std)

    def optimizer(self, model: Classifier, train: TrainConfig) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=train.lr, betas=train.adam_betas, eps=train.adam_eps)

    def plain_epochs(self) -> int:
        """How many first epochs are plain cross-entropy training exactly as `Method`'s own step
        (no state or model buffer changes, the default optimiser): runs of the same seed and
        settings share them (benchmark/engine/shared_start.py). 0 for anything else."""
        return 0

    def on_train_start(self, model: Classifier, state: TrainState) -> None:
        """Called once before the first step, with the model on its device."""

    def training_step(self, model: Classifier, batch: Batch, state: TrainState) -> StepOutput:
        logits = model(batch.x)
        return StepOutput({"ce": self.cross_entropy(logits, batch.y, state)}, logits)

    def on_step_end(self, model: Classifier, batch: Batch, output: StepOutput, state: TrainState) -> None:
        """Called after each optimiser step (state.samples_seen already counts this batch)."""

    def on_epoch_end(self, model: Classifier, state: TrainState) -> dict[str, float]:
        """Called after each epoch; the returned numbers join the training history."""
        return {}

    def on_train_end(self, model: Classifier, state: TrainState) -> None:
        """Called once after the last epoch, before the checkpoint is written."""

    def trace(self) -> list[dict[str, float]]:
        """Time series recorded during training; each record has `samples_seen`. Stored as training rows."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """Method state saved in the checkpoint (tensors and plain data only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def cross_entropy(self, logits: Tensor, y: Tensor, state: TrainState | None = None) -> Tensor:
        weight = state.class_weights if state is not None else None
        return F.cross_entropy(logits, y, weight=weight)


@dataclass
class PenaltyParams:
    strength: float = 1e-4  # lambda, the weight of the penalty term

    def __post_init__(self) -> None:
        if not self.strength >= 0:
            raise ConfigError(f"method.strength must be >= 0, got {self.strength}")


STRENGTH_GRID: dict[str, Grid] = {"paper": {"method.strength": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]}}  # paper Table 8


def method_presets(**per_dataset: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Presets of `method.*` keys per dataset: method_presets(cmnist={"strength": 1e-5}, ...)."""
    return {dataset: {"method": dict(values)} for dataset, values in per_dataset.items()}


class PenalisedMethod(Method[PenaltyParams], ABC):
    """Cross-entropy plus `strength` times one penalty of the weights or the embedding z.

    Subclasses set `term` (the loss name), `presets` (e.g. method_presets(cmnist={"strength":
    1e-5})) and `penalty(model, z)`."""

    Params = PenaltyParams
    term: ClassVar[str] = ""
    grids = STRENGTH_GRID

    @abstractmethod
    def penalty(self, model: Classifier, z: Tensor) -> Tensor:
        """The unweighted penalty of this step (a scalar)."""

    def training_step(self, model: Classifier, batch: Batch, state: TrainState) -> StepOutput:
        z = model.embed(batch.x)
        logits = model.head(z)
        return StepOutput({"ce": self.cross_entropy(logits, batch.y, state),
                           self.term: self.params.strength * self.penalty(model, z)}, logits)
