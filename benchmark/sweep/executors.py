"""Executors: where the jobs of a sweep run, behind one interface.

- `local` with one worker runs jobs one after another in this process;
- `local` with several workers runs them in a process pool sized to the machine;
- `ray` submits them as Ray tasks with CPU and GPU requests, to a local Ray instance started for
  the sweep or to a cluster (`address`): ray_executor.py.

An executor takes jobs (`submit`) and hands back updates (`wait`): progress messages of running
jobs and the result of each finished one. A job's own failure is a result with a one-line reason;
a worker that dies (killed, out of memory) is retried `retries` times, and a retried training
continues from its resume checkpoint.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import queue
import threading
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any

from benchmark.errors import BenchmarkError
from benchmark.sweep.plan import Job
from benchmark.sweep.worker import Notifier, Update, WorkerSettings, execute


class Executor(ABC):
    """Runs jobs; `wait` returns what happened since the last call."""

    def __init__(self, settings: WorkerSettings, retries: int = 1):
        self.settings, self.retries = settings, retries

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release workers (and a Ray instance started for the sweep)."""

    @abstractmethod
    def submit(self, job: Job) -> None:
        """Queue a job."""

    @abstractmethod
    def wait(self, timeout: float) -> list[Update]:
        """Progress messages and results that arrived within `timeout` seconds (blocks at most that long,
        except the in-process executor, which runs one whole job per call)."""

    @property
    @abstractmethod
    def busy(self) -> bool:
        """Whether jobs are queued or running."""


class InProcessExecutor(Executor):
    """One job at a time in this process (on a worker thread, so the driver keeps the progress
    table live): the simplest executor, for debugging and small machines."""

    def __init__(self, settings: WorkerSettings, retries: int = 1):
        super().__init__(replace(settings, threads=None), retries)  # this process keeps its threads
        self.queue: deque[Job] = deque()
        self.events: queue.Queue[Update] = queue.Queue()
        self.running = False

    def submit(self, job: Job) -> None:
        self.queue.append(job)

    @property
    def busy(self) -> bool:
        return bool(self.queue) or self.running

    def wait(self, timeout: float) -> list[Update]:
        if not self.running and self.queue:
            job = self.queue.popleft()
            self.running = True
            notify = Notifier(self.events, job.key)
            threading.Thread(target=lambda: self.events.put(execute(job, self.settings, notify)), name=f"job-{job.key}",
                             daemon=True).start()
        updates = []
        try:
            updates.append(self.events.get(timeout=timeout))
        except queue.Empty:
            pass
        updates += drain(self.events)
        if any(u.status != "running" for u in updates):
            self.running = False
        return updates


class PoolExecutor(Executor):
    """A pool of worker processes (spawned, so each has its own torch threads)."""

    def __init__(self, settings: WorkerSettings, workers: int, retries: int = 1):
        super().__init__(settings, retries)
        self.workers = workers
        self.context = multiprocessing.get_context("spawn")
        self.manager = self.context.Manager()
        self.events = self.manager.Queue()
        self.pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=self.context)
        self.futures: dict[cf.Future, Job] = {}
        self.attempts: dict[str, int] = {}

    def submit(self, job: Job) -> None:
        self.futures[self.pool.submit(execute, job, self.settings, Notifier(self.events, job.key))] = job

    @property
    def busy(self) -> bool:
        return bool(self.futures)

    def wait(self, timeout: float) -> list[Update]:
        done, _ = cf.wait(list(self.futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        updates = drain(self.events)
        broken = []
        for future in done:
            job = self.futures.pop(future)
            try:
                updates.append(future.result())
            except BrokenProcessPool:
                broken.append(job)
            except Exception as err:
                updates.append(Update(job.key, "failed", f"{type(err).__name__}: {err}"))
        if broken:  # a worker died: every job of the pool fails with it; retry them in a new pool
            broken += list(self.futures.values())
            self.futures.clear()
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=self.context)
            for job in broken:
                self.attempts[job.key] = self.attempts.get(job.key, 0) + 1
                if self.attempts[job.key] <= self.retries:
                    updates.append(Update(job.key, "running", "worker process died; retrying"))
                    self.submit(job)
                else:
                    updates.append(Update(job.key, "failed", "its worker process died (killed or out of memory)"))
        return updates

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.manager.shutdown()


def drain(inbox: Any) -> list[Update]:
    """Everything waiting in a thread or multiprocessing queue, without blocking."""
    out: list[Update] = []
    while True:
        try:
            if inbox.empty():
                return out
            out.append(inbox.get_nowait())
        except Exception:
            return out


def make_executor(name: str, settings: WorkerSettings, *, workers: int | None = None, address: str | None = None,
                  cpus: float = 1, gpus: float = 0, retries: int = 1) -> Executor:
    """The executor a sweep asked for; `workers` None sizes the local pool to the machine."""
    if name == "ray":
        from benchmark.sweep.ray_executor import RayExecutor

        return RayExecutor(settings, address=address, cpus=cpus, gpus=gpus, local_cpus=workers and int(workers * cpus),
                           retries=retries)
    if name != "local":
        raise BenchmarkError(f"unknown executor {name!r}; expected local or ray")
    if address or gpus:
        raise BenchmarkError("--address and --gpus-per-run are Ray options; add --executor ray")
    workers = workers or max(1, (os.cpu_count() or 1) // max(1, int(cpus)))
    if workers == 1:
        return InProcessExecutor(settings, retries)
    return PoolExecutor(settings, workers, retries)
