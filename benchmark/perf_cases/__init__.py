"""The built-in performance cases of `benchmark perf`, one module per area (training, evaluation,
data), the timing harness (`harness`: warm-up, interleaved runs, medians, ratios), and shared
helpers here."""

from __future__ import annotations

from typing import Callable

import torch

from benchmark.config import TrainConfig
from benchmark.data.split import Batch, DataInfo
from benchmark.method import Method, TrainState
from benchmark.models import Classifier, create_encoder

CMNIST_INFO = DataInfo(10, tuple("0123456789"), (1, 64, 64), (0.05,), (0.2009,))
IN9_INFO = DataInfo(9, tuple(f"class{k}" for k in range(9)), (3, 224, 224), (0.485, 0.456, 0.406),
                    (0.229, 0.224, 0.225))


def cmnist_batch(device: torch.device, size: int = 256) -> Batch:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(size, 1, 64, 64, generator=g)
    mask = torch.zeros(size, 1, 64, 64)
    mask[..., :32] = 1
    return Batch(x, torch.randint(0, 10, (size,), generator=g), mask, torch.arange(size)).to(device)


def engine_step(method: Method, model: Classifier, optimizer, batch: Batch, state: TrainState,
                clip: float | None = 1000.0) -> None:
    """One training step exactly as benchmark.engine.train runs it."""
    out = method.training_step(model, batch, state)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    method.on_step_end(model, batch, out, state)


def method_stepper(method: Method, device: torch.device, batch: Batch) -> tuple[Callable[[], None], Classifier]:
    """One `engine_step` of this method as a closure (model, optimiser and state inside), and the model."""
    model = method.build_model(create_encoder("lenet3", method.info)).to(device).train()
    optimizer = method.optimizer(model, TrainConfig(lr=1e-3))
    state = TrainState(device=device, epochs=1, samples_per_epoch=len(batch) * 10**6, batch_size=len(batch),
                       train_split=BatchSplit(batch))
    method.on_train_start(model, state)
    return (lambda: engine_step(method, model, optimizer, batch, state)), model


class BatchSplit:
    """A one-batch split, so methods that look at clean training data can initialise."""

    def __init__(self, batch: Batch):
        self._batch = batch.to("cpu")

    def __len__(self) -> int:
        return len(self._batch)

    def batch(self, index: torch.Tensor) -> Batch:
        b = self._batch
        return Batch(b.x[index], b.y[index], b.mask[index], index)


