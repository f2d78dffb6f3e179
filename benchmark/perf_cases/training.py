"""Training-step and checkpoint cases."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..method import Method, TrainState
from ..models import Classifier, create_encoder
from ..perf import PerfCase
from ..registry import PERF_CASES
from . import CMNIST_INFO, BatchSplit, cmnist_batch, engine_step, method_stepper


@PERF_CASES.register("train_step_vanilla")
def train_step_vanilla(device: torch.device) -> PerfCase:
    """A vanilla LeNet-3 training step at batch 256 through the engine, against a plain PyTorch step."""
    batch = cmnist_batch(device)
    candidate, _ = method_stepper(Method(None, CMNIST_INFO), device, batch)

    plain = Classifier(create_encoder("lenet3", CMNIST_INFO), CMNIST_INFO.mean, CMNIST_INFO.std).to(device).train()
    opt = torch.optim.Adam(plain.parameters(), lr=1e-3)

    def peer() -> None:
        loss = F.cross_entropy(plain(batch.x), batch.y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), 1000.0)
        opt.step()

    return PerfCase(candidate, peer, "engine vanilla step", "plain torch step", "ratio ~ 1.0 (engine overhead)",
                    "LeNet-3, batch 256, 1x64x64")


@PERF_CASES.register("train_step_hsplid")
def train_step_hsplid(device: torch.device) -> PerfCase:
    """An H-SPLID training step (hard split, all four extra terms) against a vanilla step, LeNet-3, batch 256."""
    from benchmark_methods.hsplid import HSplid, HSplidParams

    batch = cmnist_batch(device)
    method = HSplid(HSplidParams(), CMNIST_INFO)
    candidate, model = method_stepper(method, device, batch)
    # Random data gives no split by itself: force one at the median so both HSIC terms run.
    salient, beta = model.get_buffer("salient"), model.get_buffer("beta")
    salient.copy_(beta > beta.median())
    vanilla, _ = method_stepper(Method(None, CMNIST_INFO), device, batch)
    return PerfCase(candidate, vanilla, "H-SPLID step", "vanilla step", "ratio <= 1.3 (paper, A100: 1.16-1.23)",
                    "LeNet-3, batch 256, 1x64x64, hard split 512/512, all loss terms on")


@PERF_CASES.register("resume_checkpoint")
def resume_checkpoint(device: torch.device) -> PerfCase:
    """Writing H-SPLID's resume checkpoint (weights, Adam state, method state, RNGs; fsynced) against a
    vanilla training step, LeNet-3, batch 256: what a checkpoint costs in training steps."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    from benchmark_methods.hsplid import HSplid, HSplidParams

    from ..checkpoint import Position, save_resume

    batch = cmnist_batch(device)
    method = HSplid(HSplidParams(), CMNIST_INFO)
    model = method.build_model(create_encoder("lenet3", CMNIST_INFO)).to(device).train()
    optimizer = method.optimizer(model, TrainConfig(lr=1e-3))
    engine_step(Method(None, CMNIST_INFO), model, optimizer, batch,
                TrainState(device=device, epochs=1, samples_per_epoch=len(batch), batch_size=len(batch),
                           train_split=BatchSplit(batch)))  # Adam now holds its moment estimates
    folder = Path(tempfile.mkdtemp(prefix="benchmark-perf-resume-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    generator = torch.Generator().manual_seed(0)

    def candidate() -> None:
        save_resume(folder / "run.resume.pt", run_key="perf", position=Position(), model=model, optimizer=optimizer,
                    method_state=method.state_dict(), generator=generator, device=device)

    step, _ = method_stepper(Method(None, CMNIST_INFO), device, batch)
    return PerfCase(candidate, step, "resume checkpoint write", "vanilla training step",
                    "ratio <= 1 (one checkpoint per epoch costs at most 1 of the quick profile's 25 steps)",
                    "LeNet-3 + Adam: 200 MB per checkpoint")


