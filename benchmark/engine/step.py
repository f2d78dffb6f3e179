"""One optimiser step of a method: the forward pass under the configured precision (wrapped in
DistributedDataParallel when several processes train), the backward pass, clipping, the update.

`train.precision` bf16 or fp16 runs the method's training step under autocast (fp16 with a
gradient scaler) and, on CUDA, keeps convolutional weights and inputs channels-last. What the
method computes without gradients (H-SPLID's closed-form statistics) it keeps in fp32 itself;
attacks and attributions never run under autocast. fp32, the default, is the plain path.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.config import TrainConfig
from benchmark.errors import DivergedError
from benchmark.method import Method, StepOutput, TrainState
from benchmark.models import Classifier

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class _Forward(nn.Module):
    """The method's training step as a module, so that DDP sees the whole forward pass."""

    def __init__(self, model: Classifier, method: Method, state: TrainState):
        super().__init__()
        self.model, self.method, self.state = model, method, state

    def forward(self, batch) -> StepOutput:
        return self.method.training_step(self.model, batch, self.state)


class Stepper:
    def __init__(self, model: Classifier, method: Method, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                 state: TrainState):
        self.model, self.optimizer, self.cfg, self.state = model, optimizer, cfg, state
        self.device = state.device
        self.dtype = DTYPES[cfg.precision]
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.precision == "fp16" else None
        self.channels_last = self.dtype is not None and self.device.type == "cuda"
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        forward: nn.Module = _Forward(model, method, state)
        if state.world.size > 1:
            ids = [self.device.index or 0] if self.device.type == "cuda" else None
            forward = nn.parallel.DistributedDataParallel(forward, device_ids=ids)
        self.forward = forward

    def __call__(self, batch, global_size: int) -> StepOutput:
        """Train on `batch` (this rank's part of a global batch of `global_size` samples)."""
        if self.channels_last:
            batch.x = batch.x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            out = self.forward(batch)
        loss = out.loss.float() if self.dtype is not None else out.loss
        finite = bool(torch.isfinite(loss))
        if self.state.world.size > 1:  # every rank stops together, or none does
            finite = self.state.world.total(float(finite)) == self.state.world.size
        if not finite:
            raise DivergedError(
                f"training diverged: loss is {loss.item()} at epoch {self.state.epoch + 1}, step {self.state.step + 1} "
                f"(terms {', '.join(out.losses)}); nothing was saved; try a lower train.lr")
        world = self.state.world
        if world.size > 1 and out.scope == "local":  # DDP averages over ranks: weigh by this rank's share
            loss = loss * (len(batch) * world.size / global_size)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return out
