"""The Ray executor: jobs as Ray tasks with CPU and GPU requests, on a local Ray instance started
for the sweep or on a cluster; progress through a fire-and-forget mailbox actor."""

from __future__ import annotations

import os
from typing import Any

from benchmark.errors import BenchmarkError
from benchmark.sweep.executors import Executor
from benchmark.sweep.plan import Job
from benchmark.sweep.worker import Notifier, Update, WorkerSettings, execute


class RayInbox:
    """The driver's mailbox on Ray: workers `put` without waiting for an answer. (A task that
    blocks in `ray.get`, as `ray.util.queue.Queue.put` does, lends its CPU to the next queued
    task, so more jobs would run at once than their CPU requests allow.)"""

    def __init__(self, ray: Any):
        @ray.remote(num_cpus=0)
        class Mailbox:
            def __init__(self):
                self.items: list = []

            def put(self, item):
                self.items.append(item)

            def take(self):
                items, self.items = self.items, []
                return items

        self.actor = Mailbox.remote()  # type: ignore[attr-defined]  # added by ray.remote

    def put(self, item: Any) -> None:
        self.actor.put.remote(item)  # fire and forget

    def take(self, ray: Any) -> list[Update]:
        return ray.get(self.actor.take.remote())


class RayExecutor(Executor):
    """Ray tasks with `cpus` and `gpus` per job, on a cluster (`address`) or on a local Ray instance
    started at the first job (a sweep with nothing left to do never starts one)."""

    def __init__(self, settings: WorkerSettings, *, address: str | None = None, cpus: float = 1, gpus: float = 0,
                 local_cpus: int | None = None, retries: int = 1):
        super().__init__(settings, retries)
        try:
            import ray
        except ImportError:
            raise BenchmarkError("--executor ray needs Ray: pip install 'saliency-robustness-benchmark[ray]'") from None
        self.ray, self.address, self.cpus, self.gpus, self.local_cpus = ray, address, cpus, gpus, local_cpus
        self.task: Any = None
        self.events: Any = None
        self.refs: dict[Any, Job] = {}

    def connect(self) -> None:
        """Join the cluster or start the local instance; check that one job fits in it."""
        ray = self.ray
        try:
            if ray.is_initialized():  # a caller's own Ray session is used as it is
                pass
            elif self.address:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            else:
                ray.init(num_cpus=self.local_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = f" at {self.address}" if self.address else ""
            raise BenchmarkError(f"could not start or reach Ray{where}: {str(err).splitlines()[0]}") from None
        total = ray.cluster_resources()
        if total.get("CPU", 0) < self.cpus or total.get("GPU", 0) < self.gpus:
            ray.shutdown()
            raise BenchmarkError(f"the Ray cluster has {total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} "
                                 f"GPUs; one job asks for {self.cpus:g} CPUs and {self.gpus:g} GPUs")
        self.events = RayInbox(ray)
        self.task = ray.remote(execute).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.retries,
                                                retry_exceptions=False)

    def submit(self, job: Job) -> None:
        if self.task is None:
            self.connect()
        self.refs[self.task.remote(job, self.settings, Notifier(self.events, job.key))] = job

    @property
    def busy(self) -> bool:
        return bool(self.refs)

    def wait(self, timeout: float) -> list[Update]:
        if self.refs:  # block until one is ready, then take every one that is
            self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
            ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
        else:
            ready = []
        updates = self.events.take(self.ray)
        for ref in ready:
            job = self.refs.pop(ref)
            try:
                updates.append(self.ray.get(ref))
            except self.ray.exceptions.RayError as err:  # the worker died more often than `retries`
                first = (str(err).strip().splitlines() or [""])[0]
                updates.append(Update(job.key, "failed", f"Ray: {type(err).__name__}: {first}"))
        return updates

    def close(self) -> None:
        if self.task is not None and self.ray.is_initialized():
            self.ray.shutdown()
        self.task = None
