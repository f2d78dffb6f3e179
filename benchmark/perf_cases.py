"""The built-in performance cases of `benchmark perf`."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .data import Batch, DataInfo
from .errors import BenchmarkError
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


def method_stepper(method: Method, device: torch.device, batch: Batch) -> tuple[Callable[[], None], Classifier]:
    """One `engine_step` of this method as a closure (model, optimiser and state inside), and the model."""
    model = method.build_model(build_encoder(method.info)).to(device).train()
    optimizer = method.optimizer(model, TrainConfig(lr=1e-3))
    state = TrainState(device=device, epochs=1, samples_per_epoch=len(batch) * 10**6, batch_size=len(batch),
                       train_split=_BatchSplit(batch))
    method.on_train_start(model, state)
    return (lambda: engine_step(method, model, optimizer, batch, state)), model


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
    candidate, _ = method_stepper(Method(None, CMNIST_INFO), device, batch)

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


@PERF_CASES.register("train_step_hsplid")
def train_step_hsplid(device: torch.device) -> PerfCase:
    """An H-SPLID training step (hard split, all four extra terms) against a vanilla step, LeNet-3, batch 256."""
    from benchmark_methods.hsplid import HSplid, HSplidParams

    batch = cmnist_batch(device)
    method = HSplid(HSplidParams(), CMNIST_INFO)
    candidate, model = method_stepper(method, device, batch)
    # Random data gives no split by itself: force one at the median so both HSIC terms run.
    model.salient.copy_(model.beta > model.beta.median())
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

    from .checkpoint import Position, save_resume

    batch = cmnist_batch(device)
    method = HSplid(HSplidParams(), CMNIST_INFO)
    model = method.build_model(build_encoder(CMNIST_INFO)).to(device).train()
    optimizer = method.optimizer(model, TrainConfig(lr=1e-3))
    engine_step(Method(None, CMNIST_INFO), model, optimizer, batch,
                TrainState(device=device, epochs=1, samples_per_epoch=len(batch), batch_size=len(batch),
                           train_split=_BatchSplit(batch)))  # Adam now holds its moment estimates
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


@PERF_CASES.register("pgd_masked")
def pgd_masked(device: torch.device) -> PerfCase:
    """Masked L-inf PGD on the right half against torchattacks' plain PGD: same model, batch 256, 10 steps."""
    import torchattacks

    from .attacks.pgd import MaskedPGD

    batch = cmnist_batch(device)
    model = Classifier(build_encoder(CMNIST_INFO), CMNIST_INFO.mean, CMNIST_INFO.std).to(device).eval()
    ours = MaskedPGD(model, eps=1.0, steps=10, step_size=0.0156)
    theirs = torchattacks.PGD(model, eps=1.0, alpha=0.0156, steps=10, random_start=True)
    region = 1.0 - batch.mask  # the right half
    generator = torch.Generator().manual_seed(0)
    return PerfCase(lambda: ours(batch.x, batch.y, region, generator), lambda: theirs(batch.x, batch.y),
                    "masked PGD", "torchattacks PGD", "ratio <= 1.1", "LeNet-3, batch 256, 10 steps, eps 1.0")


@PERF_CASES.register("agreement_metrics")
def agreement_metrics(device: torch.device) -> PerfCase:
    """The five agreement metrics Quantus also has, batched in torch, against Quantus 0.6 on the same maps."""
    import warnings

    import numpy as np

    from .attribution.metrics import agreement_scores

    try:
        import quantus
    except ImportError as err:
        raise BenchmarkError("perf case agreement_metrics needs Quantus: pip install quantus==0.6.0") from err
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(256, 1, 64, 64, generator=g)
    masks = torch.rand(256, 1, 64, 64, generator=g) < 0.3
    a, s = maps.flatten(1).to(device), masks.flatten(1).to(device)
    names = {"pointing_game": "PointingGame", "relevance_mass_accuracy": "RelevanceMassAccuracy",
             "relevance_rank_accuracy": "RelevanceRankAccuracy", "top_k_intersection": "TopKIntersection",
             "pixel_auroc": "AUC"}
    kwargs = dict(normalise=False, abs=False, disable_warnings=True)
    metrics = [getattr(quantus, cls)(**kwargs, **({"k": 409} if name == "top_k_intersection" else {}))
               for name, cls in names.items()]
    a_np, s_np = maps.numpy().astype(np.float64), masks.numpy().astype(np.float64)
    x_np, y_np = np.zeros_like(a_np), np.zeros(256, dtype=int)

    def ours() -> None:
        agreement_scores(a, s, list(names), 409)

    def theirs() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for metric in metrics:
                metric(model=None, x_batch=x_np, y_batch=y_np, a_batch=a_np, s_batch=s_np, channel_first=True,
                       batch_size=256)

    return PerfCase(ours, theirs, "batched torch metrics", "Quantus 0.6", "ratio <= 0.02 (50x faster)",
                    "256 maps of 64x64, 5 metrics: pointing game, mass and rank accuracy, top-409, AUROC")


def write_isic_like(root, count: int, width: int = 1024, height: int = 768) -> None:
    """`count` random-noise JPEGs (hard to compress, like photos) with lesion masks, in ISIC-2017's
    archive layout: all in Training, one image each in Validation and Test_v2."""
    import csv

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for part, n in (("Training", count), ("Validation", 1), ("Test_v2", 1)):
        data, truth = root / f"ISIC-2017_{part}_Data", root / f"ISIC-2017_{part}_Part1_GroundTruth"
        data.mkdir(parents=True)
        truth.mkdir()
        rows = []
        for k in range(n):
            name = f"ISIC_{part[:2]}{k:05d}"
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(data / f"{name}.jpg",
                                                                                          quality=90)
            mask = np.zeros((height, width), dtype=np.uint8)
            mask[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 255
            Image.fromarray(mask).save(truth / f"{name}_segmentation.png")
            rows.append({"image_id": name, "melanoma": "0.0", "seborrheic_keratosis": "0.0"})
        with open(root / f"ISIC-2017_{part}_Part3_GroundTruth.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


@PERF_CASES.register("prepared_cache")
def prepared_cache(device: torch.device) -> PerfCase:
    """Loading ISIC-2017's splits from the prepared cache against decoding and resizing the raw files."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    from .registry import DATASETS

    root = Path(tempfile.mkdtemp(prefix="benchmark-perf-"))
    atexit.register(shutil.rmtree, root, True)
    write_isic_like(root, 62)
    isic = DATASETS.get("isic2017")
    params = isic.Params(image_size=224)
    isic(params, root).prepare()

    def cached() -> None:
        isic(params, root).split("train")

    def raw() -> None:
        isic(params, root).load_splits()

    return PerfCase(cached, raw, "prepared cache (Arrow)", "raw JPEG + PNG files", "ratio <= 0.33 (3x faster)",
                    "64 images of 1024x768 resized to 224, ISIC-2017 layout")
