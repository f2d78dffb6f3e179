"""The built-in performance cases of `benchmark perf`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .data import Batch, DataInfo
from .method import Method, TrainState
from .models import Classifier, build_encoder
from .perf import PerfCase
from .registry import PERF_CASES

CMNIST_INFO = DataInfo(10, tuple("0123456789"), (1, 64, 64), (0.05,), (0.2009,), "lenet3")


def cmnist_batch(device: torch.device, size: int = 256) -> Batch:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(size, 1, 64, 64, generator=g)
    mask = torch.zeros(size, 1, 64, 64)
    mask[..., :32] = 1
    return Batch(x, torch.randint(0, 10, (size,), generator=g), mask, torch.arange(size)).to(device)


def engine_step(method: Method, model: Classifier, optimizer, batch: Batch, state: TrainState,
                clip: float | None = 1000.0) -> None:
    """One training step exactly as benchmark.train runs it."""
    out = method.training_step(model, batch, state)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    method.on_step_end(model, batch, out, state)


def method_stepper(method: Method, device: torch.device, batch: Batch):
    """A model, optimiser and state ready for `engine_step` with this method."""
    model = method.build_model(build_encoder(method.info)).to(device).train()
    optimizer = method.optimizer(model, TrainConfig(lr=1e-3))
    state = TrainState(device=device, epochs=1, samples_per_epoch=len(batch) * 100, batch_size=len(batch),
                       train_split=_BatchSplit(batch))
    method.on_train_start(model, state)
    return lambda: engine_step(method, model, optimizer, batch, state)


class _BatchSplit:
    """A one-batch split, so methods that look at clean training data can initialise."""

    def __init__(self, batch: Batch):
        self._batch = batch.to("cpu")

    def __len__(self) -> int:
        return len(self._batch)

    def batch(self, index: torch.Tensor) -> Batch:
        b = self._batch
        return Batch(b.x[index], b.y[index], b.mask[index], index)


@PERF_CASES.register("train_step_vanilla")
def train_step_vanilla(device: torch.device) -> PerfCase:
    """A vanilla LeNet-3 training step at batch 256 through the engine, against a plain PyTorch step."""
    batch = cmnist_batch(device)
    candidate = method_stepper(Method(None, CMNIST_INFO), device, batch)

    plain = Classifier(build_encoder(CMNIST_INFO), CMNIST_INFO.mean, CMNIST_INFO.std).to(device).train()
    opt = torch.optim.Adam(plain.parameters(), lr=1e-3)

    def peer() -> None:
        loss = F.cross_entropy(plain(batch.x), batch.y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), 1000.0)
        opt.step()

    return PerfCase(candidate, peer, "engine vanilla step", "plain torch step", "ratio ~ 1.0 (engine overhead)",
                    "LeNet-3, batch 256, 1x64x64")
