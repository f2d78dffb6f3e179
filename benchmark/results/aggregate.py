"""From result rows to summary cells with their uncertainty, and paired comparisons.

One accounting for every reader: within a run, attack seeds are averaged (per sample when the
run has per-sample records); across training seeds a cell is the mean with an interval over seeds
and the test samples they share; with one seed the interval is over samples (Wilson for a
proportion, a bootstrap of the per-sample values otherwise). A comparison is the paired difference to a
reference configuration on the same samples and seeds (benchmark/stats/intervals.py).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from benchmark.results.columns import Column, column_of
from benchmark.results.records import Records, records_by_row
from benchmark.stats.intervals import (
    PairedDifference,
    bootstrap_interval,
    paired_bootstrap,
    seed_sample_interval,
    t_interval,
    wilson_interval,
)

GROUP = ("dataset", "profile", "method", "config_key")


@dataclass
class RunColumn:
    """One run's value in one column: its rows (attack seeds) averaged, per sample when possible."""

    seed: int
    value: float
    attack_seeds: int
    samples: int
    vector: pd.Series | None  # mean over attack seeds per sample id (None without records)
    row_interval: tuple[float, float]  # the row's own interval (one row only)
    flags: set[str] = field(default_factory=set)


@dataclass
class Cell:
    """A configuration's number in one column: mean over training seeds and its interval."""

    mean: float
    std: float
    low: float
    high: float
    seeds: int
    attack_seeds: int
    samples: int
    over: str  # what the interval is over: "seeds and samples", "seeds", "samples" or "" (none)
    flags: list[str] = field(default_factory=list)

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def overlaps(self, other: "Cell") -> bool:
        return self.has_interval and other.has_interval and self.low <= other.high and other.low <= self.high


@dataclass
class Table:
    """Every configuration's cells, by column, for the rows given."""

    columns: dict[str, Column]
    runs: dict[tuple, dict[str, list[RunColumn]]]  # group key -> column key -> runs

    def cell(self, group: tuple, column: str) -> Cell | None:
        runs = self.runs.get(group, {}).get(column)
        return cell_of(runs, self.columns[column]) if runs else None

    def groups(self) -> list[tuple]:
        return sorted(self.runs)


def records_loader() -> Callable[[str], dict[int, Records]]:
    """Per-sample records of result files, each read once."""
    cache: dict[str, dict[int, Records]] = {}

    def load(source: str) -> dict[int, Records]:
        if source not in cache:
            cache[source] = records_by_row(Path(source))
        return cache[source]
    return load


def tabulate(frame: pd.DataFrame, load: Callable[[str], dict[int, Records]] | None = None) -> Table:
    """Cells of every (dataset, profile, method, config) and column the rows feed."""
    load = load or records_loader()
    columns: dict[str, Column] = {}
    grouped: dict[tuple, dict[str, dict[str, list]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for row in frame.to_dict("records"):
        column = column_of(row)
        if column is None:
            continue
        columns.setdefault(column.key, column)
        grouped[tuple(row[k] for k in GROUP)][column.key][row["run_key"]].append(row)
    runs = {group: {key: [run_column(rows, load) for rows in by_run.values()] for key, by_run in by_column.items()}
            for group, by_column in grouped.items()}
    return Table(columns, runs)


def run_column(rows: list[dict], load: Callable[[str], dict[int, Records]]) -> RunColumn:
    """The rows of one run in one column (one per attack seed) as one value."""
    values = [float(r["value"]) for r in rows]
    records = [load(r["source_file"]).get(int(r["row"])) if _present(r.get("row")) else None for r in rows]
    vector = None
    if all(rec is not None and len(rec) for rec in records):
        parts = [pd.Series(rec.value, index=rec.sample) for rec in records]  # type: ignore[union-attr]
        vector = pd.concat(parts, axis=1).mean(axis=1).sort_index() if len(parts) > 1 else parts[0].sort_index()
    interval = (float(rows[0]["ci_low"]), float(rows[0]["ci_high"])) if len(rows) == 1 and _present(
        rows[0].get("ci_low")) else (math.nan, math.nan)
    flags = {f for r in rows for f in str(r.get("flags") or "").split(",") if f}
    seed = rows[0]["seed"]
    return RunColumn(int(seed) if _present(seed) else -1, float(np.mean(values)), len(rows), int(rows[0]["n"] or 0),
                     vector, interval, flags)


def cell_of(runs: list[RunColumn], column: Column) -> Cell:
    """Mean over seeds with an interval that carries both sources of error: over seeds and the
    test samples they share (the crossed bootstrap of benchmark/stats/intervals.py, widened to the seeds'
    t-interval) when the runs have records; without records the t-interval over seeds widened
    to the sample error of one seed's number. One seed: the interval over its samples. Bounds
    are never clipped: a t-interval may reach past [0, 1]."""
    summary = t_interval([r.value for r in runs])
    flags = sorted({f for r in runs for f in r.flags})
    attack_seeds, samples = max(r.attack_seeds for r in runs), max(r.samples for r in runs)
    kind = column.declaration.samples
    if summary.n >= 2:
        shared = shared_samples(runs)
        over = "seeds and samples"
        if shared is not None and kind in ("proportion", "mean"):
            interval = seed_sample_interval(shared)
            low, high = interval.low, interval.high
        elif kind == "proportion" and samples:  # no records: the seeds' t-interval, at least one seed's Wilson
            w_low, w_high = wilson_interval(round(summary.mean * samples), samples)
            low, high = min(summary.low, w_low), max(summary.high, w_high)
        else:
            low, high, over = summary.low, summary.high, "seeds"
        return Cell(summary.mean, summary.std, low, high, summary.n, attack_seeds, samples, over, flags)
    run = runs[0]
    low, high = run.row_interval
    if run.vector is not None and run.attack_seeds > 1 and kind in ("proportion", "mean"):
        low, high = bootstrap_interval(run.vector.to_numpy())  # per-sample means over the attack seeds
    elif math.isnan(low) and kind == "proportion" and run.samples:
        low, high = wilson_interval(round(run.value * run.samples), run.samples)
    over = "samples" if not math.isnan(low) else ""
    return Cell(run.value, math.nan, low, high, 1, attack_seeds, samples, over, flags)


def shared_samples(runs: list[RunColumn]) -> np.ndarray | None:
    """The runs' per-sample values on the samples every run has, as (runs, samples); None when a
    run has no records or the runs share no sample."""
    if any(r.vector is None for r in runs):
        return None
    common = runs[0].vector.index  # type: ignore[union-attr]
    for r in runs[1:]:
        common = common.intersection(r.vector.index)  # type: ignore[union-attr]
    if not len(common):
        return None
    return np.stack([r.vector.loc[common].to_numpy(np.float64) for r in runs])  # type: ignore[union-attr]


def paired(method: list[RunColumn], reference: list[RunColumn]) -> PairedDifference | None:
    """The method minus the reference on the seeds both have, sample by sample on the samples
    every one of those runs has (crossed bootstrap over seeds and samples, at least the seeds'
    t-interval; exact McNemar for one seed of 0/1 outcomes), else on seed means (t-interval of
    the seed differences, two or more seeds)."""
    by_seed = {r.seed: r for r in reference}
    shared = [(m, by_seed[m.seed]) for m in sorted(method, key=lambda r: r.seed) if m.seed in by_seed]
    if not shared:
        return None
    values = shared_samples([run for pair in shared for run in pair])
    if values is not None:
        return paired_bootstrap(list(values[0::2]), list(values[1::2]))
    diffs = [m.value - r.value for m, r in shared]
    summary = t_interval(diffs)
    return PairedDifference(summary.mean, summary.low, summary.high, len(shared), 0, p=summary.p)


def seed_counts(runs: Iterable[RunColumn]) -> tuple[int, int, int]:
    """(training seeds, attack seeds, samples) behind a set of runs."""
    runs = list(runs)
    return len({r.seed for r in runs}), max((r.attack_seeds for r in runs), default=0), \
        max((r.samples for r in runs), default=0)


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value is not pd.NA
