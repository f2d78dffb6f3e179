"""Writing one run's results: its rows with the run's provenance, written after every suite as
evaluation goes (a suite still to come is a `failed` row) with the finished pieces of unfinished
suites beside them, so that a process killed at any point keeps what it measured; the training
rows; the tracebacks of failed suites."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from benchmark import provenance
from benchmark.config import RunConfig
from benchmark.engine.evaluate import NOT_RUN, Evaluation, failure_row
from benchmark.engine.train import TrainResult
from benchmark.results.context import context_json, metric_names
from benchmark.results.kept import piece_rows, remove_run
from benchmark.results.layout import RunFiles
from benchmark.results.store import Measurement, write_run


@dataclass
class ResultsWriter:
    """The results file of one run as far as evaluation got."""

    files: RunFiles
    write: Callable[..., Path]  # `write_results` with the run's config and provenance bound; takes `path=`
    suites: Sequence[str]  # the configured order, which the file keeps
    todo: Sequence[str]  # the suites this execution measures
    head: list[Measurement]  # the training rows
    kept: Mapping[str, list[Measurement]]  # suites an earlier execution finished
    marks: Mapping[str, Any]  # joins every row's `extra`
    diverged: bool  # every row is flagged `diverged`

    def rows(self, evaluation: Evaluation) -> list[Measurement]:
        """The run's rows as far as `evaluation` got; a suite not measured yet is a `failed` row."""
        rows = list(self.head)
        for suite in self.suites:
            rows += self.kept.get(suite, []) + evaluation.by_suite.get(suite, [])
            if suite in self.todo and suite not in evaluation.by_suite:
                rows.append(failure_row(suite, NOT_RUN))
        if self.diverged:
            for m in rows:
                m.flags = tuple(dict.fromkeys([*m.flags, "diverged"]))
        return tagged(rows, self.marks)

    def save(self, evaluation: Evaluation, running: Mapping[str, Mapping[int, list[Measurement]]]) -> Path:
        """Write the pieces of unfinished suites (those of `running`, the suite in progress, too),
        then, between suites, the results file. The pieces go first, so that none is lost if
        writing the results fails."""
        unfinished = {**evaluation.unfinished, **running}
        if unfinished:
            self.write(piece_rows(unfinished), path=self.files.pieces)
        if running:  # the results file is as it was after the last suite
            return self.files.results
        path = self.write(self.rows(evaluation), path=self.files.results)
        if not unfinished:
            remove_run(self.files.pieces)
        return path


def log_tracebacks(files: RunFiles, tracebacks: Mapping[str, str]) -> Path:
    """The full tracebacks of failed suites, for the one-line reasons the console and rows show."""
    log = files.log
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        for suite, text in tracebacks.items():
            fh.write(f"suite {suite} ({provenance.now().isoformat()}):\n{text}\n")
    return log


def tagged(measurements: list[Measurement], tags: Mapping[str, Any] | None) -> list[Measurement]:
    if tags:
        for m in measurements:
            m.extra = {**m.extra, **tags}
    return measurements


def write_results(measurements: list[Measurement], config: RunConfig, created, device: torch.device,
                  data_source: str, path: Path, train_commit: str, ranks: int = 1) -> Path:
    identity = {"run_key": config.key(), "config_key": config.key(with_seed=False), "method": config.method_name,
                "dataset": config.dataset, "profile": config.profile, "seed": config.seed,
                "config": config.to_json()}
    columns = provenance.run_columns(identity, created=created, device=provenance.device_name(device, ranks),
                                     data_source=data_source, train_commit=train_commit)
    context = context_json(config.method_name, config.dataset, config.profile, metric_names(measurements))
    return write_run(measurements, columns, path, context)


def training_measurements(result: TrainResult) -> list[Measurement]:
    """The training history (per epoch) and the method's trace (per sample count) as 'training' rows."""
    rows = []
    for record in result.history:
        epoch = int(record["epoch"])
        for name, value in record.items():
            if name != "epoch":
                rows.append(Measurement("training", name, float(value), 0, eval_set="train", extra={"epoch": epoch}))
    for record in result.trace:
        seen = int(record["samples_seen"])
        for name, value in record.items():
            if name != "samples_seen":
                rows.append(Measurement("training", name, float(value), 0, eval_set="train",
                                        extra={"samples_seen": seen}))
    rows.append(Measurement("training", "total_duration_s", result.duration_s, 0, eval_set="train"))
    return rows
