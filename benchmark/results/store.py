"""The result store: long-format rows with provenance, one Parquet file per run.

One writer (`write_run`: the rows, each with its 95 % interval, and their per-sample records),
many readers (`read_results`): the CLI summary, the leaderboard and its HTML / Markdown / CSV
exports. The schema is documented in docs/RESULTS.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.files import write_atomically
from benchmark.results.context import KEY as CONTEXT_KEY
from benchmark.results.records import Records, write_records
from benchmark.stats.intervals import bootstrap_interval, wilson_interval

SCHEMA_VERSION = 2
FAILED = "failed"  # metric of the row that records a failed suite; extra.error holds the reason
WORST_CASE = "worst_case"  # the `attack` of rows that count a sample robust only if it survives every attack


@dataclass
class Measurement:
    """One measured number and the settings that produced it."""

    suite: str
    metric: str
    value: float
    n: int
    eval_set: str | None = "test"
    attack: str | None = None
    region: str | None = None
    norm: str | None = None
    eps: float | None = None
    steps: int | None = None
    step_size: float | None = None
    attack_seed: int | None = None
    explainer: str | None = None
    severity: int | None = None
    area_fraction: float | None = None
    flags: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    duration_s: float | None = None
    records: Records | None = None  # the per-sample values this row is the mean of

    @classmethod
    def of_records(cls, suite: str, metric: str, records: Records, **settings: Any) -> "Measurement":
        """A row that is the mean of its per-sample records (n = their number)."""
        return cls(suite, metric, records.mean(), len(records), records=records, **settings)


SCHEMA = pa.schema(
    [
        ("schema_version", pa.int32()),
        ("run_id", pa.string()),
        ("run_key", pa.string()),
        ("config_key", pa.string()),
        ("method", pa.string()),
        ("dataset", pa.string()),
        ("profile", pa.string()),
        ("seed", pa.int64()),
        ("eval_set", pa.string()),
        ("suite", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("n", pa.int64()),
        ("attack", pa.string()),
        ("region", pa.string()),
        ("norm", pa.string()),
        ("eps", pa.float64()),
        ("steps", pa.int64()),
        ("step_size", pa.float64()),
        ("attack_seed", pa.int64()),
        ("explainer", pa.string()),
        ("severity", pa.int64()),
        ("area_fraction", pa.float64()),
        ("flags", pa.string()),
        ("extra", pa.string()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("row", pa.int32()),
        ("duration_s", pa.float64()),
        ("config", pa.string()),
        ("git_commit", pa.string()),
        ("train_commit", pa.string()),
        ("versions", pa.string()),
        ("device", pa.string()),
        ("data_source", pa.string()),
        ("created", pa.timestamp("us", tz="UTC")),
    ]
)
COLUMNS = tuple(SCHEMA.names)
REQUIRED = ("schema_version", "run_key", "method", "dataset", "suite", "metric", "value")
# What each older schema version lacks (filled with nulls when read).
ADDED_IN = {2: ("train_commit", "ci_low", "ci_high", "row")}
READABLE_VERSIONS = (1, 2)


def columns_of(version: int) -> tuple[str, ...]:
    """The columns a file of schema `version` holds."""
    later = {c for v, cols in ADDED_IN.items() if v > version for c in cols}
    return tuple(c for c in COLUMNS if c not in later)


def interval(m: Measurement) -> tuple[float, float]:
    """The 95 % interval of a row over its samples, as its metric declares: Wilson for a
    proportion, a percentile bootstrap of its records for a mean, none otherwise."""
    from benchmark.metrics import metric_of

    kind = metric_of(m.metric).samples
    if kind == "proportion" and m.n and not math.isnan(m.value):
        return wilson_interval(round(m.value * m.n), m.n)
    if kind == "mean" and m.records is not None and len(m.records):
        return bootstrap_interval(m.records.value)
    return math.nan, math.nan


def to_rows(measurements: Iterable[Measurement], run: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten measurements and the run's provenance into schema rows (with their intervals)."""
    rows = []
    for position, m in enumerate(measurements):
        row = {**run, **{f.name: getattr(m, f.name) for f in fields(m) if f.name != "records"},
               "schema_version": SCHEMA_VERSION, "row": position}
        row["flags"] = ",".join(sorted(set(m.flags)))
        row["extra"] = json.dumps(m.extra, sort_keys=True)
        row["ci_low"], row["ci_high"] = interval(m)
        rows.append({c: row.get(c) for c in COLUMNS})
    return rows


def write_run(measurements: Sequence[Measurement], run: dict[str, Any], path: Path, context: str = "") -> Path:
    """Write a run's rows and their per-sample records, each file atomically (`write_atomically`):
    never half a file. The records go first, so a results file never lacks the records it names.
    `context` (benchmark/results/context.py) goes into the file's metadata."""
    write_records([m.records for m in measurements], path)
    table = pa.Table.from_pylist(to_rows(measurements, run), schema=SCHEMA)
    if context:
        table = table.replace_schema_metadata({CONTEXT_KEY: context.encode()})
    return write_atomically(path, lambda fh: pq.write_table(table, fh))


def measurements_of(frame: pd.DataFrame, records: Mapping[int, Records] | None = None) -> list[Measurement]:
    """Result rows back as Measurements with their per-sample records (the inverse of `to_rows`,
    provenance dropped)."""
    names = [f.name for f in fields(Measurement) if f.name != "records"]
    out = []
    for record in frame.to_dict("records"):
        values: dict[str, Any] = {k: (None if k != "value" and _missing(record[k]) else record[k]) for k in names}
        values["flags"] = tuple(f for f in (values["flags"] or "").split(",") if f)
        values["extra"] = json.loads(values["extra"] or "{}")
        for key in ("n", "steps", "attack_seed", "severity"):
            if values[key] is not None:
                values[key] = int(values[key])
        row = record.get("row")
        values["records"] = (records or {}).get(int(row)) if row is not None and not _missing(row) else None
        out.append(Measurement(**values))
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT


def table_problem(table: pa.Table) -> str:
    """Why a Parquet table is not a readable results file of this schema ('' when it is)."""
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        return f"not a results file (missing columns {', '.join(missing)})"
    if not pa.types.is_integer(table.schema.field("schema_version").type):
        return "not a results file (schema_version is not an integer)"
    versions = set(table.column("schema_version").to_pylist())
    if len(versions) != 1 or not versions <= set(READABLE_VERSIONS):
        return f"schema version {sorted(versions)} is not one of {', '.join(map(str, READABLE_VERSIONS))}"
    version = versions.pop()
    absent = [c for c in columns_of(version) if c not in table.column_names]
    if absent:
        return f"lacks {len(absent)} columns of schema version {version} ({', '.join(absent[:4])}...)"
    for name in columns_of(version):
        actual, expected = table.schema.field(name).type, SCHEMA.field(name).type
        if not _compatible(actual, expected):
            return f"column {name!r} holds {actual}, expected {expected}"
    return ""


def upgraded(table: pa.Table) -> pa.Table:
    """A readable table of any schema version in today's columns (what it lacks as nulls)."""
    columns = [table.column(c) if c in table.column_names else pa.nulls(len(table), SCHEMA.field(c).type)
               for c in COLUMNS]
    return pa.Table.from_arrays(columns, names=list(COLUMNS))


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Types a column may have and still be cast to the schema's without losing meaning."""
    if actual == expected or pa.types.is_null(actual):
        return True
    for kind in (pa.types.is_integer, pa.types.is_string, pa.types.is_timestamp):
        if kind(expected):
            return kind(actual) or (kind is pa.types.is_string and pa.types.is_large_string(actual))
    if pa.types.is_floating(expected):
        return pa.types.is_floating(actual) or pa.types.is_integer(actual)
    return False


def read_run(file: Path | str) -> tuple[pd.DataFrame | None, str]:
    """One results file in today's columns, checked (readable Parquet, a readable schema version,
    every column of its version with a compatible type), or None and why not: the one reader of
    the format, for resuming, sweeps, `benchmark results` and the leaderboard alike."""
    try:
        table = pq.read_table(file)
    except Exception as err:  # corrupt, truncated or missing files are reported, never fatal
        return None, f"{file}: not a readable Parquet file ({type(err).__name__})"
    problem = table_problem(table)
    if problem:
        return None, f"{file}: {problem}"
    frame = upgraded(table).cast(SCHEMA).to_pandas()
    frame["source_file"] = str(file)
    frame["context"] = (table.schema.metadata or {}).get(CONTEXT_KEY, b"").decode()
    return frame, ""


def read_results(paths: Sequence[Path | str]) -> tuple[pd.DataFrame, list[str]]:
    """All result rows under the given folders or files, and a line per file that was skipped."""
    frames, problems = [], []
    for file in _parquet_files(paths):
        frame, problem = read_run(file)
        if frame is None:
            problems.append(problem)
            continue
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*COLUMNS, "source_file", "context"]), problems
    return pd.concat(frames, ignore_index=True), problems


def latest_per_run_key(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep, for each run_key, only the rows of its most recent run (copies never double-count)."""
    if frame.empty:
        return frame
    newest = frame.groupby("run_key")["created"].transform("max")
    kept = frame[frame["created"] == newest]
    first_id = kept.groupby("run_key")["run_id"].transform("first")
    kept = kept[kept["run_id"] == first_id]
    if "source_file" in kept:  # the same execution copied into several files: one file's rows
        first_file = kept.groupby("run_key")["source_file"].transform("first")
        kept = kept[kept["source_file"] == first_file]
    return kept.reset_index(drop=True)


CANDIDATE_TAG = '"sweep_stage": "candidate"'  # in `extra`: a sweep's validation-only selection run
START_TAG = '"role": "start"'  # in `extra`: a run trained only as the starting weights of others


def reported_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows a summary or leaderboard reports: the latest copy of each run, without the
    candidate runs of a sweep's model selection (they measure validation data only) and the
    starting runs of `train.init_from` (trained, never evaluated)."""
    if frame.empty:
        return frame
    extra = frame["extra"].fillna("")
    hidden = extra.str.contains(CANDIDATE_TAG, regex=False) | extra.str.contains(START_TAG, regex=False)
    return latest_per_run_key(frame[~hidden])


def _parquet_files(paths: Sequence[Path | str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.glob("*.parquet") if not f.name.startswith(".")))
        elif p.suffix == ".parquet" and p.exists():
            files.append(p)
    return files
