"""What a results folder already holds of a run: a complete results file, the suites a partial
one finished, and the finished pieces of unfinished suites (kept beside it while a run is
incomplete). A rerun takes these instead of measuring again."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from benchmark.results.layout import RunFiles
from benchmark.results.records import records_by_row, records_path
from benchmark.results.store import FAILED, Measurement, measurements_of, read_run


def remove_run(path: Path) -> None:
    """Delete a file `write_run` wrote, and its records."""
    records_path(path).unlink(missing_ok=True)
    Path(path).unlink(missing_ok=True)


@dataclass(frozen=True)
class Holdings:
    """What a results folder holds of one run, each file read once."""

    done: str | None  # the run id of a complete results file (`completed_run_id`)
    has_checkpoint: bool
    kept: dict[str, list[Measurement]]  # suites the results file holds complete
    pieces: dict[str, dict[int, list[Measurement]]]  # finished pieces of unfinished suites


def holdings(files: RunFiles, run_key: str, suites: Mapping[str, Sequence[str]], reuse: bool) -> Holdings:
    """The folder's holdings of a run; without `reuse`, only whether it is done and has a checkpoint."""
    frame = _rows_of_run(files.results, run_key)
    kept = _finished(frame, records_by_row(files.results), suites) if reuse and frame is not None else {}
    pieces = finished_pieces(files.pieces, run_key) if reuse else {}
    return Holdings(_run_id_if_complete(frame), files.checkpoint.is_file(), kept, pieces)


def completed_run_id(path: Path, run_key: str) -> str | None:
    """The run id of a readable results file at `path` written for `run_key` with no failed suite,
    else None (a missing, corrupt, foreign or partial file does not count as done)."""
    return _run_id_if_complete(_rows_of_run(path, run_key))


def _run_id_if_complete(frame: pd.DataFrame | None) -> str | None:
    if frame is None or (frame["metric"] == FAILED).any() or frame["run_id"].nunique() != 1:
        return None
    return str(frame["run_id"].iloc[0])


def _rows_of_run(path: Path, run_key: str) -> pd.DataFrame | None:
    """The rows of a readable, non-empty results-format file written for `run_key`, else None."""
    frame, _ = read_run(path)
    return None if frame is None or frame.empty or set(frame["run_key"]) != {run_key} else frame


def _finished(frame: pd.DataFrame, records, suites: Mapping[str, Sequence[str]]) -> dict[str, list[Measurement]]:
    """The measurements of each suite (name -> the `suite` values of its rows) that the rows hold
    complete (rows present, no failure recorded)."""
    done = {}
    for suite, row_suites in suites.items():
        rows = frame[frame["suite"].isin(row_suites)]
        if (rows["suite"] == suite).any() and not (rows["metric"] == FAILED).any():
            done[suite] = measurements_of(rows, records)
    return done


PIECE_OF, PIECE = "piece_of", "piece"  # the `extra` keys that file a kept piece's rows under suite and index


def piece_rows(unfinished: Mapping[str, Mapping[int, Sequence[Measurement]]]) -> list[Measurement]:
    """The finished pieces of unfinished suites as rows, each tagged with its suite and piece
    index (copies: the measurements given are not changed); `finished_pieces` reads them back."""
    return [replace(m, extra={**m.extra, PIECE_OF: suite, PIECE: index})
            for suite, pieces in unfinished.items() for index, rows in sorted(pieces.items()) for m in rows]


def finished_pieces(path: Path, run_key: str) -> dict[str, dict[int, list[Measurement]]]:
    """suite -> piece index -> rows, from a file of `piece_rows` written for this run (a missing,
    corrupt or foreign file holds none)."""
    frame = _rows_of_run(path, run_key)
    if frame is None:
        return {}
    out: dict[str, dict[int, list[Measurement]]] = {}
    for m in measurements_of(frame, records_by_row(path)):
        suite, index = m.extra.pop(PIECE_OF, None), m.extra.pop(PIECE, None)
        if suite is not None and index is not None:
            out.setdefault(suite, {}).setdefault(int(index), []).append(m)
    return out
