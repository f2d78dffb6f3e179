"""The result store: schema, atomic writes, tolerant reads, de-duplication."""

from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow.parquet as pq
import pytest

from benchmark.results.store import (
    COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    Measurement,
    latest_per_run_key,
    read_results,
    write_run,
)


def run_columns(run_key="k1", run_id="k1-a", seed=0, created=None):
    return {"run_id": run_id, "run_key": run_key, "config_key": "c", "method": "vanilla", "dataset": "cmnist",
            "profile": "quick", "seed": seed, "config": "{}", "git_commit": "abc", "versions": "{}",
            "device": "cpu", "data_source": "x", "created": created or datetime(2026, 1, 1, tzinfo=timezone.utc)}


def measurements():
    return [
        Measurement("accuracy", "accuracy", 0.9, 100, eval_set="test"),
        Measurement("robustness", "robust_accuracy", 0.5, 64, attack="pgd", region="background", norm="linf",
                    eps=2 / 255, steps=10, step_size=0.0156, attack_seed=3, area_fraction=0.4,
                    flags=("b", "a"), extra={"k": 1}),
    ]


def test_round_trip_keeps_types_and_values(tmp_path):
    path = write_run(measurements(), run_columns(), tmp_path / "r.parquet")
    assert pq.read_schema(path).equals(SCHEMA)
    frame, problems = read_results([tmp_path])
    assert problems == []
    assert list(frame.columns[: len(COLUMNS)]) == list(COLUMNS)
    row = frame[frame.suite == "robustness"].iloc[0]
    assert (row.attack, row.region, row.norm, row.steps, row.attack_seed) == ("pgd", "background", "linf", 10, 3)
    assert row.eps == pytest.approx(2 / 255) and row["flags"] == "a,b" and row["extra"] == '{"k": 1}'
    assert pd.isna(frame[frame.suite == "accuracy"].iloc[0].attack)
    assert set(frame.schema_version) == {SCHEMA_VERSION}


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = write_run(measurements(), run_columns(), tmp_path / "r.parquet")
    before = path.read_bytes()
    bad = measurements()
    bad[0].value = "not a number"
    with pytest.raises(Exception):
        write_run(bad, run_columns(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]


def test_corrupt_and_foreign_files_are_reported_and_skipped(tmp_path):
    write_run(measurements(), run_columns(), tmp_path / "good.parquet")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 definitely not parquet")
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "foreign.parquet")
    frame, problems = read_results([tmp_path])
    assert len(frame) == 2
    assert any("corrupt.parquet: not a readable Parquet file" in p for p in problems)
    assert any("foreign.parquet: not a results file" in p for p in problems)


def test_repeated_runs_of_one_configuration_count_once(tmp_path):
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    write_run(measurements(), run_columns(run_id="k1-old", created=t0), tmp_path / "a.parquet")
    write_run(measurements(), run_columns(run_id="k1-new", created=t0 + timedelta(hours=1)),
              tmp_path / "copy-from-elsewhere.parquet")
    write_run(measurements(), run_columns(run_key="k2", run_id="k2-a", seed=1), tmp_path / "b.parquet")
    frame, _ = read_results([tmp_path])
    kept = latest_per_run_key(frame)
    assert sorted(kept.run_id.unique()) == ["k1-new", "k2-a"]
    assert len(kept) == 4
