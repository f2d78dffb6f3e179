"""One job of a sweep in a worker: what every job shares (`WorkerSettings`), what it reports
(`Update`, sent through a `Notifier`), and `execute`, which runs it in this process or, for a job
with several ranks, as a DDP group started by torchrun's launcher (`execute_ranked`)."""

from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Literal

from benchmark.errors import BenchmarkError
from benchmark.sweep.plan import Job

Status = Literal["running", "done", "skipped", "failed"]


@dataclass(frozen=True)
class WorkerSettings:
    """What every job of a sweep shares (paths are absolute: workers may start elsewhere)."""

    out_dir: str
    data_root: str | None = None
    device: str = "auto"
    threads: int | None = None  # torch threads per job; None leaves the process default
    plugins: tuple[str, ...] = ()
    checkpoint_every: int | None = None
    fresh: bool = False
    processes: int = 1  # ranks per job: more than one runs each job as one DDP group (execute_ranked)
    stack_seeds: tuple[int, ...] = ()  # --stack-seeds: the sweep's seeds, trained as one stack per configuration


@dataclass(frozen=True)
class Update:
    """A running job's progress message, or (status done / skipped / failed) its result."""

    key: str
    status: Status
    detail: str = ""
    duration_s: float = 0.0


class Notifier:
    """Sends a job's progress messages to the driver through a queue (picklable for workers);
    anything with `put(item)` serves: a multiprocessing queue proxy, a `RayInbox`."""

    def __init__(self, queue: Any, key: str):
        self.queue, self.key = queue, key

    def __call__(self, message: str) -> None:
        try:
            self.queue.put(Update(self.key, "running", message))
        except Exception:  # progress is best effort; the job goes on
            pass


def execute(job: Job, settings: WorkerSettings, notify: Callable[[str], None]) -> Update:
    """Run one job in this process. Any failure becomes a failed Update with a one-line reason;
    the full traceback of an unexpected error goes to OUT/logs/<key>.txt."""
    if settings.processes > 1:
        return execute_ranked(job, settings, notify)
    import torch

    from benchmark.engine.weights import Workspace
    from benchmark.progress import Reporter
    from benchmark.registry import load_plugin_file

    started = time.perf_counter()
    notify("started")
    threads = torch.get_num_threads()
    try:
        if settings.threads:
            torch.set_num_threads(settings.threads)
        for plugin in settings.plugins:
            load_plugin_file(plugin)
        where = Workspace(Path(settings.out_dir), Path(settings.data_root) if settings.data_root else None,
                          settings.device, Reporter(quiet=True, listener=notify))
        tags: dict[str, Any] = {"role": "start"} if job.stage == "start" else {"sweep_stage": job.stage}
        if job.point:
            tags["sweep_point"] = job.label
        outcome = run_job(job, settings, where, tags, notify)
        if outcome.config.key() != job.key:
            raise BenchmarkError(f"the job resolved to config key {outcome.config.key()}, not {job.key}: "
                                 "were the workers given other plugins or package versions than the driver?")
        if outcome.failures:
            suite, reason = next(iter(outcome.failures.items()))
            return Update(job.key, "failed", f"suite {suite} failed: {reason} (rows of the other suites kept in "
                                             f"{outcome.results_path})", time.perf_counter() - started)
        detail = "done by another process" if outcome.skipped else (
            f"resumed at step {outcome.resumed_from_step}" if outcome.resumed_from_step else "")
        status: Status = "skipped" if outcome.skipped else "done"
        return Update(job.key, status, detail, time.perf_counter() - started)
    except BenchmarkError as err:
        return Update(job.key, "failed", str(err).splitlines()[0], time.perf_counter() - started)
    except Exception as err:  # an unexpected error: one line here, the traceback in a file
        log = Path(settings.out_dir) / "logs" / f"{job.key}.txt"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(traceback.format_exc())
        first = (str(err).strip().splitlines() or [""])[0]
        return Update(job.key, "failed", f"{type(err).__name__}: {first} (traceback in {log})",
                      time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)


def run_job(job: Job, settings: WorkerSettings, where, tags: dict[str, Any], notify: Callable[[str], None]):
    """The job's call: `run` for a training stage (its configuration's seeds stacked first with
    --stack-seeds: the first job trains them all under every seed's lock, the others wait on a
    lock, then find their checkpoint), `evaluate_checkpoint` for a final evaluation."""
    from benchmark.engine.run import evaluate_checkpoint, run

    if job.stage in ("start", "candidate", "run"):
        if len(settings.stack_seeds) > 1 and job.seed in settings.stack_seeds:
            from benchmark.engine.stacked import stack_seeds

            notify(stack_seeds(job.method, job.dataset, profile=job.profile, seeds=settings.stack_seeds,
                               overrides=job.overrides, workspace=where))
        return run(job.method, job.dataset, profile=job.profile, seed=job.seed, overrides=job.overrides,
                   workspace=where, resume=not settings.fresh, skip_existing=not settings.fresh,
                   checkpoint_every=settings.checkpoint_every, tags=tags)
    assert job.checkpoint is not None, "a final job evaluates its candidate's checkpoint"
    return evaluate_checkpoint(Path(job.checkpoint), suites=job.suites, overrides=job.overrides,
                               workspace=where, skip_existing=not settings.fresh, tags=tags)


def execute_ranked(job: Job, settings: WorkerSettings, notify: Callable[[str], None]) -> Update:
    """One job as `settings.processes` ranks of one DDP run on this machine, through torchrun's
    launcher called in process: one rank per GPU the job holds (Ray sets CUDA_VISIBLE_DEVICES), or
    gloo ranks on the CPU, sharing the job's CPU threads. Rank 0's result is the job's; progress
    stops at "started" (the ranks run in processes of their own)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    started = time.perf_counter()
    notify(f"started as {settings.processes} ranks")
    threads = max(1, (settings.threads or os.cpu_count() or 1) // settings.processes)
    launch = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=settings.processes, run_id=job.key,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2)
    quiet = logging.getLogger("torch.distributed.elastic")  # its warnings about signal handlers off the main
    level = quiet.level                                       # thread are not the user's business
    quiet.setLevel(logging.ERROR)
    try:
        results = elastic_launch(launch, execute)(job, replace(settings, processes=1, threads=threads), silent)
    except ChildFailedError as err:
        failure = next(iter(err.failures.values()), None)
        reason = (failure.message if failure and isinstance(failure.message, str) else "") or str(err)
        return Update(job.key, "failed", f"a rank of the run failed: {(reason.strip().splitlines() or [''])[-1]}",
                      time.perf_counter() - started)
    finally:
        quiet.setLevel(level)
    return results[0]


def silent(message: str) -> None:
    """The progress messages of ranks started by `execute_ranked` (none reach the driver)."""
