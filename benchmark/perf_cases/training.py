"""Training-step and checkpoint cases."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from benchmark.config import TrainConfig
from benchmark.method import Method, TrainState
from benchmark.models import Classifier, create_encoder
from benchmark.perf_cases import CMNIST_INFO, IN9_INFO, BatchSplit, cmnist_batch, engine_step, method_stepper
from benchmark.perf_cases.harness import PerfCase, gpu_case
from benchmark.registry import PERF_CASES


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


@PERF_CASES.register("train_step_hsplid_resnet50")
@gpu_case
def train_step_hsplid_resnet50(device: torch.device) -> PerfCase:
    """H-SPLID's step against vanilla's on ResNet-50 (the paper's regime: 1.16-1.23x on an A100),
    batch 64 of 224 px in bf16 autocast with channels-last, through the engine's Stepper, hard
    split at the median so every term runs. On a CPU it only shows that it runs (batch 4)."""
    from benchmark.data.split import Batch
    from benchmark.engine.step import Stepper
    from benchmark_methods.hsplid import HSplid, HSplidParams

    size = 64 if device.type == "cuda" else 4
    info = IN9_INFO
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.rand(size, 3, 224, 224, generator=g), torch.randint(0, 9, (size,), generator=g),
                  torch.ones(size, 1, 224, 224), torch.arange(size)).to(device)

    def stepper(method: Method):
        model = method.build_model(create_encoder("resnet50", info)).to(device).train()
        cfg = TrainConfig(lr=1e-4, precision="bf16" if device.type == "cuda" else "fp32")
        state = TrainState(device=device, epochs=1, samples_per_epoch=size * 10**6, batch_size=size,
                           train_split=BatchSplit(batch))
        method.on_train_start(model, state)
        if isinstance(method, HSplid):  # random data gives no split by itself: force one at the median
            model.get_buffer("salient").copy_(model.get_buffer("beta") > model.get_buffer("beta").median())
        step = Stepper(model, method, method.optimizer(model, cfg), cfg, state)

        def one() -> None:
            method.on_step_end(model, batch, step(batch, size), state)

        return one

    return PerfCase(stepper(HSplid(HSplidParams(), info)), stepper(Method(None, info)), "H-SPLID step",
                    "vanilla step", "ratio <= 1.3 (paper, A100: 1.16-1.23)",
                    f"ResNet-50, batch {size} of 224 px, bf16 + channels-last on CUDA, hard split, all terms on")


@PERF_CASES.register("train_stacked_seeds")
def train_stacked_seeds(device: torch.device) -> PerfCase:
    """One step of three LeNet-3 seeds stacked into one vmapped model (engine/stacked.py) against
    three vanilla engine steps one after the other, batch 256 each: what `--stack-seeds` saves per
    step. On a GPU one LeNet-3 step leaves most of the device idle; on a CPU the stacked step is
    slower (vmap's grouped convolutions and layout copies; docs/PERFORMANCE.md)."""
    from benchmark.engine.stacked import StackedStep

    seeds = (0, 1, 2)
    batch = cmnist_batch(device)
    method = Method(None, CMNIST_INFO)
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(method.build_model(create_encoder("lenet3", CMNIST_INFO)).to(device).train())
    state = TrainState(device=device, epochs=1, samples_per_epoch=len(batch), batch_size=len(batch),
                       train_split=BatchSplit(batch))
    stacked = StackedStep(models, method, state, method.optimizer(models[0], TrainConfig(lr=1e-3)), 1000.0, seeds)
    alone = [method_stepper(Method(None, CMNIST_INFO), device, batch)[0] for _ in seeds]

    def peer() -> None:
        for step in alone:
            step()

    return PerfCase(lambda: stacked([batch] * len(seeds)), peer, "3 seeds, one stacked step",
                    "3 vanilla steps, one after the other", "ratio < 1 on a GPU (on a CPU it is slower)",
                    "LeNet-3, batch 256 per seed, 1x64x64")


@PERF_CASES.register("resume_checkpoint")
def resume_checkpoint(device: torch.device) -> PerfCase:
    """Writing H-SPLID's resume checkpoint (weights, Adam state, method state, RNGs; fsynced) against a
    vanilla training step, LeNet-3, batch 256: what a checkpoint costs in training steps."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    from benchmark.checkpoint import Position, save_resume
    from benchmark_methods.hsplid import HSplid, HSplidParams

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




@PERF_CASES.register("resnet50_training")
@gpu_case
def resnet50_training(device: torch.device) -> PerfCase:
    """ResNet-50 training as `benchmark run --dataset in9` did it before JPEGs were decoded on the
    device: PIL in the loader's workers (one per core), flipped, stepped by the engine; bf16
    autocast with channels-last against fp32. A GPU case: images/s is the images per call over
    the median. On a CPU it only shows that the pipeline runs (two batches of 4)."""
    from benchmark.data.loader import resolve_workers

    bf16, files = resnet50_through_loader(device, "bf16", "pil", resolve_workers(None))
    fp32, _ = resnet50_through_loader(device, "fp32", "pil", resolve_workers(None))
    return PerfCase(bf16, fp32, "bf16 autocast, channels-last", "fp32", "images/s = images per call / median",
                    f"ResNet-50 from scratch, {files}, PIL decoding in {resolve_workers(None)} loader workers")


@PERF_CASES.register("resnet50_training_device_decode")
@gpu_case
def resnet50_training_device_decode(device: torch.device) -> PerfCase:
    """ResNet-50 bf16 training through the real loader with JPEGs decoded on the device
    (`train.decoder=device`, what "auto" does on CUDA) and at most 4 loader workers reading
    bytes, against PIL decoding in the same workers. Read its images/s against
    `resnet50_ceiling` (issue 32's target: >= 80 %)."""
    from benchmark.data.loader import available_cores

    workers = min(4, available_cores())
    on_device, files = resnet50_through_loader(device, "bf16", "device", workers)
    pil, _ = resnet50_through_loader(device, "bf16", "pil", workers)
    return PerfCase(on_device, pil, f"decoded on the device, {workers} workers", f"PIL in {workers} workers",
                    "images/s >= 80 % of resnet50_ceiling's bf16", f"ResNet-50 bf16 + channels-last, {files}")


def resnet50_through_loader(device: torch.device, precision: Literal["bf16", "fp32"], decoder: str, workers: int):
    """One pass of ResNet-50 training steps over ImageNet-sized JPEGs through the loader (resize
    224, seeded flip, Adam), as a closure; and what it reads, in words."""
    from benchmark.data.augment import flipped
    from benchmark.data.loader import load_batches
    from benchmark.engine.step import Stepper
    from benchmark.perf_cases.data import imagenet_sized_split

    batch_size, batches, files = (256, 8, 512) if device.type == "cuda" else (4, 2, 8)
    split = imagenet_sized_split(files, classes=9)
    info = IN9_INFO
    order = torch.randperm(batch_size * batches, generator=torch.Generator().manual_seed(0)) % files
    method = Method(None, info)
    model = method.build_model(create_encoder("resnet50", info)).to(device).train()
    cfg = TrainConfig(lr=1e-4, precision=precision)
    state = TrainState(device=device, epochs=1, samples_per_epoch=len(order), batch_size=batch_size,
                       train_split=split)
    stepper = Stepper(model, method, method.optimizer(model, cfg), cfg, state)
    generator = torch.Generator().manual_seed(0)

    def one_pass() -> None:
        for batch in load_batches(split, order, batch_size, workers=workers, device=device, decoder=decoder):
            stepper(flipped(batch, generator), len(batch))

    return one_pass, f"{batches} batches of {batch_size} ({batch_size * batches} images per call) from {files} " \
                     "JPEGs of 500x375"


@PERF_CASES.register("resnet50_ceiling")
@gpu_case
def resnet50_ceiling(device: torch.device) -> PerfCase:
    """The device's own ResNet-50 training rate: the engine's step on tensors already on the device
    (no decoding, no loader), bf16 autocast with channels-last against fp32. The ceiling that the
    loader's images/s (`resnet50_training`) is read against. On a CPU it only shows that it runs."""
    from benchmark.data.split import Batch, TensorSplit
    from benchmark.engine.step import Stepper

    batch_size, steps = (256, 8) if device.type == "cuda" else (4, 2)
    info = IN9_INFO
    g = torch.Generator().manual_seed(0)
    batches = [Batch(torch.rand(batch_size, 3, 224, 224, generator=g).to(device),
                     torch.randint(0, 9, (batch_size,), generator=g).to(device),
                     torch.ones(batch_size, 1, 224, 224).to(device), torch.arange(batch_size)) for _ in range(steps)]

    def trainer(precision: Literal["bf16", "fp32"]):
        method = Method(None, info)
        model = method.build_model(create_encoder("resnet50", info)).to(device).train()
        cfg = TrainConfig(lr=1e-4, precision=precision)
        unused = TensorSplit(torch.zeros(1, 3, 224, 224, dtype=torch.uint8), torch.zeros(1),
                             torch.zeros(1, 1, 224, 224, dtype=torch.uint8))  # vanilla never reads its split
        state = TrainState(device=device, epochs=1, samples_per_epoch=batch_size * steps, batch_size=batch_size,
                           train_split=unused)
        stepper = Stepper(model, method, method.optimizer(model, cfg), cfg, state)

        def one_pass() -> None:
            for batch in batches:
                stepper(batch, len(batch))
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        return one_pass

    images = batch_size * steps
    return PerfCase(trainer("bf16"), trainer("fp32"), f"bf16 autocast, channels-last: {images} images per call",
                    f"fp32: {images} images per call", "images/s = images per call / median; the loader's ceiling",
                    f"ResNet-50 from scratch, {steps} steps of {batch_size} synthetic 224x224 images on the device, "
                    "Adam")
