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
    settings = executor.settings
    out_dir = Path(settings.out_dir)
    groups = plan(spec, out_dir)
    outcome = SweepOutcome()
    finished: set[str] = set()
    settled: set[str] = set()  # done, skipped or failed
    selected: set[int] = set()  # groups already through selection

    waiting: list[Job] = []  # candidates whose starting run has not finished yet

    def dispatch(job: Job) -> None:
        if job.key in progress.rows:
            return  # another group planned the same run
        if job.needs is not None and job.needs not in finished:
            if job.needs not in settled:
                waiting.append(job)
            else:
                progress.add(job, "failed", "its starting run (train.init_from) failed")
                settled.add(job.key)
            return
        if not settings.fresh and already_done(job):
            progress.add(job, "skipped", "results exist")
            finished.add(job.key)
            settled.add(job.key)
        else:
            progress.add(job)
            executor.submit(job)

    def select_ready_groups() -> None:
        for number, group in enumerate(groups):
            if not spec.select or number in selected or not all(j.key in settled for j in group.candidates.values()):
                continue
            selected.add(number)
            finals = choose(group, finished, spec, out_dir, outcome)
            for job in finals:
                dispatch(job)

    def release_waiting() -> None:
        ready = [job for job in waiting if job.needs in settled]
        for job in ready:
            waiting.remove(job)
            dispatch(job)

    with progress:
        for group in groups:
            for job in [*group.starts.values(), *group.candidates.values()]:
                dispatch(job)
        release_waiting()
        select_ready_groups()
        while executor.busy:
            for update in executor.wait(timeout=0.5):
                progress.update(update)
                if update.status != "running":
                    settled.add(update.key)
                    if update.status in ("done", "skipped"):
                        finished.add(update.key)
            release_waiting()
            select_ready_groups()
    if not spec.select:  # every point was evaluated on test: those are the results to summarise
        outcome.finals = [job for group in groups for job in group.candidates.values()]
    outcome.counts = progress.counts()
    return outcome


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
