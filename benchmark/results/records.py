"""Per-sample records: the outcome of every evaluated sample behind a result row, so any summary
can be recomputed, given an interval, and compared sample by sample with another run.

A run's records live beside its results file, in OUT/samples/<stem>.parquet: one row per (result
row, sample) with `row` (the summary row's position in the results file), `sample` (the sample's
index in its split, the same for every run on the same evaluation subset) and `value` (1.0 / 0.0
for correctness, the score for continuous metrics). A summary row's `value` is the mean of its
records (tested for every suite). Written atomically, before the results file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from benchmark.files import write_atomically

RECORDS_SCHEMA = pa.schema([("row", pa.int32()), ("sample", pa.int64()), ("value", pa.float32())])
FOLDER = "samples"


@dataclass
class Records:
    """The per-sample values behind one measurement, keyed by sample index."""

    sample: np.ndarray  # int64
    value: np.ndarray  # float32 (float64 while computing)

    @classmethod
    def of(cls, sample: torch.Tensor | np.ndarray, value: torch.Tensor | np.ndarray) -> "Records":
        s = sample.detach().cpu().numpy() if isinstance(sample, torch.Tensor) else np.asarray(sample)
        v = value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if s.shape != v.shape:
            raise ValueError(f"records need one value per sample, got {s.shape} and {v.shape}")
        return cls(s.astype(np.int64), v.astype(np.float64))

    @classmethod
    def concat(cls, parts: Sequence["Records"]) -> "Records":
        return cls(np.concatenate([p.sample for p in parts]), np.concatenate([p.value for p in parts]))

    def mean(self) -> float:
        return float(self.value.mean()) if len(self.value) else float("nan")

    def __len__(self) -> int:
        return len(self.sample)


def records_path(results: Path) -> Path:
    """Where the records of a results file live."""
    results = Path(results)
    return results.parent / FOLDER / results.name


def write_records(records: Sequence[Records | None], results: Path) -> Path | None:
    """The records of each row (None where a row has none) as one file beside `results`; a run
    without any record writes none (and removes a stale file)."""
    path = records_path(results)
    parts = [(row, r) for row, r in enumerate(records) if r is not None and len(r)]
    if not parts:
        path.unlink(missing_ok=True)
        return None
    table = pa.table({"row": np.concatenate([np.full(len(r), row, dtype=np.int32) for row, r in parts]),
                      "sample": np.concatenate([r.sample for _, r in parts]),
                      "value": np.concatenate([r.value for _, r in parts]).astype(np.float32)},
                     schema=RECORDS_SCHEMA)
    return write_atomically(path, lambda fh: pq.write_table(table, fh))


def read_records(results: Path | str) -> pd.DataFrame:
    """The records of a results file (columns row, sample, value); empty when it has none or the
    file is unreadable."""
    path = records_path(Path(results))
    try:
        return pq.read_table(path).to_pandas()
    except Exception:  # absent (old runs, foreign files) or damaged: the summaries stand alone
        return pd.DataFrame({"row": pd.Series(dtype="int32"), "sample": pd.Series(dtype="int64"),
                             "value": pd.Series(dtype="float32")})


def records_by_row(results: Path | str) -> dict[int, Records]:
    """The records of a results file grouped by row."""
    frame = read_records(results)
    return {int(row): Records(part["sample"].to_numpy(), part["value"].to_numpy(np.float64))
            for row, part in frame.groupby("row", sort=False)}
