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
from benchmark.engine.saving import write_results
from benchmark.perf_cases.harness import PerfCase
from benchmark.results.records import Records
from benchmark.results.store import Measurement, read_results

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
    from benchmark_leaderboard.boards import build_boards

    folder = Path(tempfile.mkdtemp(prefix="benchmark-perf-report-"))
    atexit.register(shutil.rmtree, folder, True)
    write_quick_folder(folder)
    frame, _ = read_results([folder])

    def boards() -> None:
        build_boards(frame)

    return PerfCase(boards, None, "intervals, paired tests and ranking of one board", "", "under 5 s",
                    "3 methods x 3 seeds, C-MNIST quick rows and records (109 rows, ~12,000 records per run)")


def write_relation_folder(folder: Path, configurations: int, seeds: int = 3, follows: str = "agreement",
                          seed: int = 0) -> None:
    """C-MNIST quick-like results of H-SPLID at `configurations` grid points x `seeds` whose
    background robustness is built to follow the relevance mass of every explainer (`agreement`,
    independent of clean accuracy) or only clean accuracy (`clean`, with the mass also following
    clean accuracy, so the two correlate without any relation beyond it)."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 11, 29, tzinfo=timezone.utc)
    for i in range(configurations):
        quality, mass = rng.random(), rng.random()
        if follows == "clean":
            mass = float(np.clip(quality + rng.normal(0, 0.1), 0, 1))
        robust = 0.2 + 0.6 * (mass if follows == "agreement" else quality)
        clean = 0.5 + 0.45 * quality
        for s in range(seeds):
            config = resolve("hsplid", "cmnist", seed=s, overrides=[f"method.lambda_s={i / 100}"])
            rows = quick_rows(rng, robust)
            for row in rows:
                if row.suite == "accuracy" or row.metric == "clean_accuracy":
                    row.value, row.records = relabel(row, rng, clean)
                elif row.metric == "relevance_mass_accuracy":
                    row.value, row.records = relabel(row, rng, mass, continuous=True)
            write_results(rows, config, start + timedelta(minutes=i * seeds + s), torch.device("cpu"), "synthetic",
                          folder / f"hsplid_{i}_{s}.parquet", "perf")


def relabel(row: Measurement, rng: np.random.Generator, level: float, continuous: bool = False):
    """New per-sample values around `level` for a row's samples: (mean, records)."""
    samples = row.records.sample if row.records is not None else np.arange(row.n)
    noise = rng.normal(0, 0.05, len(samples))
    values = np.clip(level + noise, 0, 1) if continuous else (rng.random(len(samples)) < level).astype(np.float64)
    return float(values.mean()), Records.of(samples, values)


def relation(device: torch.device) -> PerfCase:
    """The relation section of a board (correlations over models with bootstrap intervals, partial
    correlations, the within-model halves) for 30 configurations x 3 seeds of C-MNIST quick rows."""
    from benchmark.results.aggregate import tabulate
    from benchmark.results.relation import relation_of
    from benchmark.results.store import reported_rows

    folder = Path(tempfile.mkdtemp(prefix="benchmark-perf-relation-"))
    atexit.register(shutil.rmtree, folder, True)
    write_relation_folder(folder, 30)
    frame, _ = read_results([folder])
    table = tabulate(reported_rows(frame))
    return PerfCase(lambda: relation_of(table, None), None, "relation section of one board", "", "under 5 s",
                    "30 configurations x 3 seeds, 9 explainers x 3 agreement metrics, 2 robustness targets")
