"""ImageNet-scale training on this CPU: the parallel loader, lower precision, torchrun with gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from benchmark.data.images import FileSplit
from benchmark.data.loader import load_batches
from benchmark.provenance import cpu_model
from benchmark_methods.hsplid import CMNIST_TERMS
from conftest import cli_env


@pytest.fixture(scope="module")
def jpeg_split(tmp_path_factory):
    """A file-backed split of photo-like JPEGs with masks for some samples (ImageNet-sized, 500x375)."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(23):
        pixels = np.clip(rng.normal(120, 60, (375, 500, 3)), 0, 255).astype(np.uint8)
        paths.append(root / f"n0000000{i % 3}_{i}.JPEG")
        Image.fromarray(pixels).save(paths[-1], quality=90)

    def mask_of(k: int):
        return None if k % 2 else (np.arange(375 * 500).reshape(375, 500) % 7 == k % 7)

    return FileSplit(paths, [i % 3 for i in range(23)], 64, mask_of=mask_of)


def same(a, b) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("x", "y", "mask", "index"))


@pytest.mark.parametrize("order, first", [("sorted", 0), ("shuffled", 0), ("shuffled", 2)])
def test_the_parallel_loader_yields_the_serial_batches_in_the_same_order(jpeg_split, order, first):
    indices = torch.arange(len(jpeg_split))
    if order == "shuffled":
        indices = indices[torch.randperm(len(indices), generator=torch.Generator().manual_seed(5))]
    serial = [jpeg_split.batch(indices[s:s + 5]) for s in range(5 * first, len(indices), 5)]  # one image at a time
    parallel = list(load_batches(jpeg_split, indices, 5, first_batch=first, workers=2))
    assert len(serial) == len(parallel) == 5 - first  # 23 samples in batches of 5, from batch `first` on
    assert all(same(a, b) for a, b in zip(serial, parallel))



class OnlyInWorkers:
    """A file-backed split that refuses to decode in the training process: evaluating it proves
    the batches came from loader workers."""

    def __init__(self, split):
        self.split, self.parent = split, os.getpid()

    def __len__(self):
        return len(self.split)

    def stored(self, index):
        assert os.getpid() != self.parent, "decoded in the training process"
        return self.split.stored(index)

    def batch(self, index):
        return self.stored(index).decoded()


def test_evaluation_decodes_file_backed_splits_in_eval_workers(jpeg_split):
    from benchmark.config import resolve
    from benchmark.engine.evaluate import EvalContext

    config = resolve("vanilla", "cmnist", overrides=["eval.workers=2", "eval.batch_size=5"])
    ctx = EvalContext(None, None, config, torch.device("cpu"), None)  # batches need no model
    batches = list(ctx.batches(OnlyInWorkers(jpeg_split), limit=17))
    indices = torch.randperm(23, generator=torch.Generator().manual_seed(0))[:17].sort().values
    serial = [jpeg_split.batch(indices[s:s + 5]) for s in range(0, 17, 5)]
    assert len(batches) == 4 and all(same(a, b) for a, b in zip(serial, batches))

# H-SPLID with every term on (the C-MNIST preset; the quick profile turns them off)
TERMS_ON = [f"{key}={value}" for key, value in CMNIST_TERMS.items()]
DDP_RUN = ["--method", "hsplid", *(f"--set={term}" for term in TERMS_ON), "--set", "train.samples=384",
           "--set", "train.batch_size=64",
           "--set", "train.lr=3e-4", "--set", "eval.suites=accuracy", "--set", "eval.samples=64", "--quiet"]


@pytest.mark.slow
def test_two_gloo_ranks_train_what_one_process_trains_and_write_once(tmp_path):
    """torchrun --nproc_per_node=2: each rank trains on half of every batch of 64, 12 steps
    (6 vanilla warm-up, 6 H-SPLID with a hard split, so every loss term and the gathered
    statistics are exercised); the same losses, mask and centres as one process with batch 64."""
    env = cli_env(OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-m", "benchmark", "run", *DDP_RUN, "--out", str(tmp_path / "one")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "benchmark", "run", *DDP_RUN, "--out", str(tmp_path / "two")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    (ckpt_one,) = (tmp_path / "one" / "checkpoints").glob("*.pt")
    ckpts = list((tmp_path / "two" / "checkpoints").glob("*"))
    results = list((tmp_path / "two").glob("*.parquet"))
    assert len(ckpts) == 1 and len(results) == 1 and ckpts[0].name == ckpt_one.name  # one writer, same key
    a, b = (torch.load(p, weights_only=True) for p in (ckpt_one, ckpts[0]))
    history_a, history_b = json.loads(a["history"]), json.loads(b["history"])
    assert len(history_a) == len(history_b) == 2 and "loss_hsic_x_salient" in history_a[1]
    for ra, rb in zip(history_a, history_b):
        for name in ra:
            if name.startswith(("loss", "first_loss", "final_loss")):
                assert rb[name] == pytest.approx(ra[name], rel=1e-3, abs=1e-4), name  # float32 sums in another order;
                # a wrong scale (per-rank statistics, a missing all-reduce) is off by tens of percent
    # the mask thresholds a moving average; float32 reduction order may move a dimension at the boundary
    masks = a["model"]["salient"], b["model"]["salient"]
    assert int((masks[0] != masks[1]).sum()) <= 10 and 0 < int(masks[0].sum()) < 1024
    traces = ([t["salient_dims"] for t in state["method_state"]["trace"]] for state in (a, b))
    assert all(abs(x - y) <= 10 for x, y in zip(*traces))
    for name in ("centres", "global_centre"):  # moving averages of the gathered embeddings of every step
        gap = (a["method_state"][name] - b["method_state"][name]).abs()
        assert gap.mean() <= 1e-3 * a["method_state"][name].abs().mean() and gap.max() <= 0.05, name
    clean = [pd.read_parquet(p).query("metric == 'accuracy'").set_index("eval_set")["value"]
             for p in ((tmp_path / "one").glob("*.parquet").__next__(), results[0])]
    assert (clean[0] - clean[1]).abs().max() <= 1 / 64  # at most one of 64 samples moves


SHARDED_EVAL = ["--method", "hsplid", "--set", "train.samples=128", "--set", "train.epochs=1",
                "--set", "method.warmup_epochs=0", "--set", "eval.suites=accuracy,robustness,corruptions,attribution",
                "--set", "eval.samples=32", "--set", "robustness.samples=16", "--set", "corruptions.samples=16",
                "--set", "attribution.samples=8", "--set", "attribution.heatmaps=2",
                "--set", "attribution.explainers=saliency,smoothgrad,occlusion", "--quiet"]
NOT_COMPARED = ["duration_s", "created", "run_id", "device"]


@pytest.mark.slow
def test_two_gloo_ranks_share_the_evaluation_and_write_what_one_process_writes(tmp_path):
    """The same checkpoint evaluated by one process and by two torchrun ranks (each suite's pieces
    shared out, rows gathered on rank 0): the same rows, records and heatmaps, bit for bit."""
    env = cli_env(OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-m", "benchmark", "run", *SHARDED_EVAL, "--out", str(tmp_path / "one")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    (ckpt,) = (tmp_path / "one" / "checkpoints").glob("*.pt")
    (tmp_path / "two" / "checkpoints").mkdir(parents=True)
    (tmp_path / "two" / "checkpoints" / ckpt.name).write_bytes(ckpt.read_bytes())
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "benchmark", "run", *SHARDED_EVAL, "--out", str(tmp_path / "two")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr
    (a,), (b,) = (list((tmp_path / side).glob("*.parquet")) for side in ("one", "two"))
    assert a.name == b.name
    rows_a, rows_b = (pd.read_parquet(p).drop(columns=NOT_COMPARED) for p in (a, b))
    assert len(rows_a) > 40 and set(rows_a["suite"]) >= {"accuracy", "robustness", "corruptions", "attribution"}
    pd.testing.assert_frame_equal(rows_a, rows_b)
    pd.testing.assert_frame_equal(*(pd.read_parquet(side.parent / "samples" / side.name) for side in (a, b)))
    heatmaps = [sorted((tmp_path / side / "artifacts").rglob("*.png")) for side in ("one", "two")]
    assert len(heatmaps[0]) == 3 and [p.name for p in heatmaps[0]] == [p.name for p in heatmaps[1]]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(*heatmaps))


@pytest.mark.parametrize("precision, n", [("bf16", 64), ("fp16", 16)])  # fp16 convolutions are slow on a CPU
def test_a_lower_precision_step_follows_the_fp32_step_and_attacks_stay_fp32(precision, n):
    """One LeNet-3 step of H-SPLID (closed-form statistics, HSIC) under autocast: the loss and the
    update agree with fp32 to the precision's resolution, the weights stay fp32, and the model
    afterwards (what attacks and explainers call) computes in fp32 again."""
    import copy

    from benchmark.config import resolve
    from benchmark.engine.step import Stepper
    from benchmark.engine.trained import build
    from benchmark.method import TrainState

    config = resolve("hsplid", "cmnist", overrides=[f"train.samples={n}", f"train.batch_size={n}",
                                                   "method.warmup_epochs=0", f"train.precision={precision}",
                                                   *TERMS_ON])
    torch.manual_seed(0)
    dataset, method, model = build(config, None)
    split = dataset.split("train")
    batch = split.batch(torch.arange(n))
    outputs, updates = [], []
    for dtype in ("fp32", precision):
        trained, m = copy.deepcopy(model), copy.deepcopy(method)
        cfg = config.train if dtype == precision else resolve("hsplid", "cmnist").train
        state = TrainState(torch.device("cpu"), 1, n, n, split, train_indices=torch.arange(n),
                           generator=torch.Generator().manual_seed(0))
        optimizer = m.optimizer(trained, cfg)
        m.on_train_start(trained, state)
        before = [p.detach().clone() for p in trained.parameters()]
        stepper = Stepper(trained, m, optimizer, cfg, state)
        outputs.append(stepper(batch, n))
        updates.append(torch.cat([(p.detach() - b).flatten() for p, b in zip(trained.parameters(), before)]))
        assert all(p.dtype == torch.float32 for p in trained.parameters())
        assert trained(batch.x).dtype == torch.float32  # outside the step: fp32, as attacks need
    resolution = {"bf16": 2e-2, "fp16": 2e-3}[precision]
    for name in outputs[0].losses:
        low, full = (float(o.losses[name].detach()) for o in outputs[::-1])
        assert low == pytest.approx(full, rel=10 * resolution, abs=1e-3), name
    if precision == "fp16" and not updates[1].any():  # the scaler's first scale overflowed: step skipped,
        assert stepper.scaler is not None and stepper.scaler.get_scale() < 2.0**16  # scale backed off
        return
    cosine = torch.nn.functional.cosine_similarity(updates[0], updates[1], dim=0)
    assert cosine > 0.9, float(cosine)  # Adam's first step is sign-like: a few flipped tiny gradients only


def test_workers_and_fp32_leave_the_config_key_alone():
    from benchmark.config import resolve

    base = resolve("vanilla", "cmnist").key()
    assert resolve("vanilla", "cmnist", overrides=["train.workers=4", "eval.workers=0"]).key() == base
    assert resolve("vanilla", "cmnist", overrides=["train.precision=fp32"]).key() == base
    assert resolve("vanilla", "cmnist", overrides=["train.precision=fp16"]).key() != base
    assert os.cpu_count()


@pytest.mark.slow
def test_a_sweep_runs_each_job_as_a_group_of_ranks(tmp_path):
    """--processes-per-run 2 (what --gpus-per-run 2 gives a Ray job): each job is one DDP run of two
    gloo ranks, started by torchrun's launcher inside the worker; one results file and checkpoint
    per job, provenance naming the ranks, and a second sweep finds the job done."""
    sweep = [sys.executable, "-m", "benchmark", "sweep", "--methods", "hsplid", "--seeds", "0", "--all-points",
             "--workers", "1", "--processes-per-run", "2", "--set", "train.samples=128", "--set", "train.epochs=1",
             "--set", "method.warmup_epochs=0", "--set", "eval.suites=accuracy", "--set", "eval.samples=32",
             "--out", str(tmp_path / "out")]
    first = subprocess.run(sweep, cwd=tmp_path, env=cli_env(OMP_NUM_THREADS="1"), capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    (results,) = (tmp_path / "out").glob("*.parquet")
    assert len(list((tmp_path / "out" / "checkpoints").glob("*"))) == 1
    assert set(pd.read_parquet(results)["device"]) == {"2 ranks x cpu (" + cpu_model() + ", 1 threads)"}
    assert "Failed to register signal handlers" not in first.stderr
    again = subprocess.run(sweep, cwd=tmp_path, env=cli_env(OMP_NUM_THREADS="1"), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and "1 already done" in again.stderr + again.stdout


def test_each_rank_takes_every_nth_piece_of_work():
    from benchmark.distributed import World

    assert World().mine(3) == [0, 1, 2]
    assert [World(rank, 3).mine(7) for rank in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]


def test_default_workers_share_the_cores_among_a_machines_ranks(monkeypatch):
    from benchmark.data import loader

    monkeypatch.setattr(loader, "available_cores", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert loader.resolve_workers(None) == 16 and loader.resolve_workers(3) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert loader.resolve_workers(None) == 2 and loader.resolve_workers(0) == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert loader.resolve_workers(None) == 1


@pytest.mark.parametrize("argv, status", [(["list", "methods"], 0), (["run", "--method", "no-such-method"], 2)])
def test_the_command_leaves_its_process_group_however_it_ends(argv, status, capsys):
    """Left to interpreter shutdown, gloo's threads abort a finished rank now and then (SIGABRT):
    the command leaves the group itself, on success and on error."""
    import torch.distributed as dist

    from benchmark.cli import main

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        assert main(argv) == status
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
