"""`benchmark perf report_intervals`: the leaderboard's intervals and paired tests on a C-MNIST
quick results folder of 3 methods x 3 seeds (registered through the `benchmark.perf_cases` entry
point, so the engine never imports the leaderboard)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import torch

from benchmark.config import resolve
from benchmark.perf import PerfCase
from benchmark.records import Records
from benchmark.run import write_results
from benchmark.store import Measurement, read_results

METHODS = ("vanilla", "weight_decay", "hsplid")
EXPLAINERS = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "guided_backprop", "grad_cam",
              "deeplift", "occlusion", "pixel_mask")
AGREEMENT = ("pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy", "top_k_intersection",
             "pixel_auroc", "iou_at_mask_size", "energy_pointing_game")


def quick_rows(rng: np.random.Generator, skill: float) -> list[Measurement]:
    """The rows (and per-sample records) a C-MNIST quick run writes, with outcomes drawn at random."""
    def outcomes(n: int, p: float) -> Records:
        return Records.of(np.arange(n), (rng.random(n) < p).astype(np.float64))

    rows = [Measurement.of_records("accuracy", "accuracy", outcomes(n, 0.93), eval_set=split)
            for split, n in (("val", 1600), ("test", 2000))]
    rows.append(Measurement.of_records("robustness", "clean_accuracy", outcomes(256, 0.93)))
    for attack in ("pgd", "noise"):
        for region, eps in (("right_digit", 1.0), ("full", 0.1)):
            metric = "robust_accuracy" if attack == "pgd" else "baseline_accuracy"
            rows.append(Measurement.of_records("robustness", metric, outcomes(256, skill), attack=attack,
                                               region=region, norm="linf", eps=eps, attack_seed=0))
    for corruption in ("brightness", "defocus_blur", "snow"):
        for severity in (1, 3, 5):
            rows.append(Measurement.of_records("corruptions", "corrupted_accuracy", outcomes(256, 0.8),
                                               attack=corruption, region="right_digit", severity=severity,
                                               attack_seed=0))
    for explainer in EXPLAINERS:
        for metric in AGREEMENT + ("deletion_auc", "insertion_auc"):
            rows.append(Measurement.of_records("attribution", metric, Records.of(np.arange(32), rng.random(32)),
                                               explainer=explainer))
    return rows


def write_quick_folder(folder: Path) -> None:
    rng = np.random.default_rng(0)
    start = datetime(2026, 11, 29, tzinfo=timezone.utc)
    for i, method in enumerate(METHODS):
        for seed in range(3):
            config = resolve(method, "cmnist", seed=seed)
            write_results(quick_rows(rng, 0.5 + 0.1 * i), config, start + timedelta(minutes=3 * i + seed),
                          torch.device("cpu"), "synthetic", folder / f"{method}_{seed}.parquet", "perf")


def report_intervals(device: torch.device) -> PerfCase:
    """The page's boards (every cell's interval, every paired comparison, the ranking) of a C-MNIST
    quick folder of 3 methods x 3 seeds, from its Parquet files and records."""
    from .boards import build_boards

    folder = Path(tempfile.mkdtemp(prefix="benchmark-perf-report-"))
    atexit.register(shutil.rmtree, folder, True)
    write_quick_folder(folder)
    frame, _ = read_results([folder])

    def boards() -> None:
        build_boards(frame)

    return PerfCase(boards, None, "intervals, paired tests and ranking of one board", "", "under 5 s",
                    "3 methods x 3 seeds, C-MNIST quick rows and records (109 rows, ~12,000 records per run)")
