"""Sweeps: grids of runs on an executor, model selection on validation, final test evaluation.

    plan (plan.py) ─► start jobs (train.init_from=run:<method>: trained once, before the
                      │                candidates that start from them)
                      ▼
                     candidate jobs ─► executor (executors.py) ─► candidate results (val only)
                                                                        │ per method/dataset/profile
                     final jobs ◄── write_selection ◄── select (select.py)
                          │
                          └──► executor ─► final results (what `benchmark run` of the point writes)

A job whose results already exist is not run again, so a rerun does no new work and a killed
sweep resumes where it stopped; each run's lock keeps concurrent sweeps from doing a run twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmark.results.kept import completed_run_id
from benchmark.sweep.executors import Executor, make_executor
from benchmark.sweep.plan import Group, Job, SweepSpec, final_jobs, plain_config, plan
from benchmark.sweep.select import Selection, select, write_selection
from benchmark.sweep.table import SweepProgress
from benchmark.sweep.worker import WorkerSettings

__all__ = ["SweepSpec", "WorkerSettings", "SweepOutcome", "make_executor", "sweep"]


@dataclass
class SweepOutcome:
    selections: list[Selection] = field(default_factory=list)
    finals: list[Job] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # groups without a selection
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.counts.get("failed")


def already_done(job: Job) -> bool:
    """Results for the job's key are in place (and, for a training job, the checkpoint it trained)."""
    if job.stage in ("start", "candidate", "run") and not (job.checkpoint and Path(job.checkpoint).is_file()):
        return False
    return completed_run_id(Path(job.results_path), job.key) is not None


def sweep(spec: SweepSpec, executor: Executor, progress: SweepProgress) -> SweepOutcome:
    """Run a planned sweep to the end on `executor`; failures are recorded, never raised."""
    scheduler = Scheduler(spec, executor, progress)
    with progress:
        scheduler.start()
        while executor.busy:
            scheduler.settle(executor.wait(timeout=0.5))
    outcome = scheduler.outcome
    if not spec.select:  # every point was evaluated on test: those are the results to summarise
        outcome.finals = [job for group in scheduler.groups for job in group.candidates.values()]
    outcome.counts = progress.counts()
    return outcome


class Scheduler:
    """Which job runs when: starting runs before the candidates that need them, a group's
    selection once all its candidates have settled, its final evaluations after that."""

    def __init__(self, spec: SweepSpec, executor: Executor, progress: SweepProgress):
        self.spec, self.executor, self.progress = spec, executor, progress
        self.out_dir = Path(executor.settings.out_dir)
        self.groups = plan(spec, self.out_dir)
        self.outcome = SweepOutcome()
        self.finished: set[str] = set()
        self.settled: set[str] = set()  # done, skipped or failed
        self.selected: set[int] = set()  # groups already through selection
        self.waiting: list[Job] = []  # candidates whose starting run has not finished yet

    def start(self) -> None:
        for group in self.groups:
            for job in [*group.starts.values(), *group.candidates.values()]:
                self.dispatch(job)
        self.advance()

    def settle(self, updates) -> None:
        for update in updates:
            self.progress.update(update)
            if update.status != "running":
                self.settled.add(update.key)
                if update.status in ("done", "skipped"):
                    self.finished.add(update.key)
        self.advance()

    def advance(self) -> None:
        """Release the candidates whose start settled, then select the groups that are ready."""
        for job in [job for job in self.waiting if job.needs in self.settled]:
            self.waiting.remove(job)
            self.dispatch(job)
        for number, group in enumerate(self.groups):
            ready = all(j.key in self.settled for j in group.candidates.values())
            if self.spec.select and number not in self.selected and ready:
                self.selected.add(number)
                for job in choose(group, self.finished, self.spec, self.out_dir, self.outcome):
                    self.dispatch(job)

    def dispatch(self, job: Job) -> None:
        if job.key in self.progress.rows:
            return  # another group planned the same run
        if job.needs is not None and job.needs not in self.finished:
            if job.needs not in self.settled:
                self.waiting.append(job)
            else:
                self.progress.add(job, "failed", "its starting run (train.init_from) failed")
                self.settled.add(job.key)
            return
        if not self.executor.settings.fresh and already_done(job):
            self.progress.add(job, "skipped", "results exist")
            self.finished.add(job.key)
            self.settled.add(job.key)
        else:
            self.progress.add(job)
            self.executor.submit(job)


def choose(group: Group, finished: set[str], spec: SweepSpec, out_dir: Path, outcome: SweepOutcome) -> list[Job]:
    """Select a group's configuration, record the decision, and return its final evaluation jobs."""
    selection = select(group, finished)
    outcome.selections.append(selection)
    if selection.chosen is None:
        outcome.problems.append(f"{group.name}: no grid point finished for every seed; nothing selected")
        return []
    final_key = plain_config(group, selection.chosen, spec, group.seeds[0]).key(with_seed=False)
    write_selection(selection, out_dir, final_key)
    finals = final_jobs(group, selection.chosen, spec, out_dir)
    outcome.finals.extend(finals)
    return finals
