"""Micro-benchmark harness: warm-up, interleaved timed runs, medians, spread, ratio to a peer.

A case is a function registered in PERF_CASES that takes a device and returns a `PerfCase`:
the code under test and, optionally, a peer doing the same work another way. Candidate and
peer alternate within one process, so machine noise hits both alike; the ratio of medians is
the number to quote. The CPU time per call (this process and the workers it waited for) says
how many cores a case kept busy.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from rich.console import Console
from rich.table import Table

from benchmark.provenance import device_name, git_commit, now, resolve_device
from benchmark.registry import PERF_CASES


@dataclass
class PerfCase:
    candidate: Callable[[], object]
    peer: Callable[[], object] | None = None
    candidate_label: str = "benchmark"
    peer_label: str = ""
    target: str = ""  # the goal, e.g. "ratio <= 1.1", shown beside the result
    setup_note: str = ""


@dataclass
class PerfResult:
    case: str
    candidate: str
    peer: str
    median_s: float
    q1_s: float
    q3_s: float
    peer_median_s: float | None
    peer_q1_s: float | None
    peer_q3_s: float | None
    ratio: float | None  # median(candidate) / median(peer)
    repeats: int
    target: str
    note: str
    cpu_s: float = 0.0  # median CPU seconds per call (this process and its workers)
    peer_cpu_s: float | None = None


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (e.g. loader workers), user + system."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _timed(fn: Callable[[], object], sync: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call."""
    sync()
    start, cpu = time.perf_counter(), _cpu_seconds()
    fn()
    sync()
    return time.perf_counter() - start, _cpu_seconds() - cpu


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return q[0], statistics.median(values), q[2]


def measure(name: str, case: PerfCase, *, repeats: int, warmup: int, device: torch.device) -> PerfResult:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        case.candidate()
        if case.peer:
            case.peer()
    cand: list[tuple[float, float]] = []
    peer: list[tuple[float, float]] = []
    for i in range(repeats):
        # Alternate which goes first so drift in machine load does not favour either.
        order = [(cand, case.candidate), (peer, case.peer)]
        if i % 2:
            order.reverse()
        for bucket, fn in order:
            if fn is not None:
                bucket.append(_timed(fn, sync))
    q1, med, q3 = quartiles([wall for wall, _ in cand])
    cpu = statistics.median(c for _, c in cand)
    if peer:
        p1, pmed, p3 = quartiles([wall for wall, _ in peer])
        return PerfResult(name, case.candidate_label, case.peer_label, med, q1, q3, pmed, p1, p3, med / pmed, repeats,
                          case.target, case.setup_note, cpu, statistics.median(c for _, c in peer))
    return PerfResult(name, case.candidate_label, case.peer_label, med, q1, q3, None, None, None, None, repeats,
                      case.target, case.setup_note, cpu)


def gpu_case(build: Callable[[torch.device], PerfCase]) -> Callable[[torch.device], PerfCase]:
    """Marks a case that measures a GPU: `benchmark perf` without names leaves it out on a CPU
    (named, it still runs there, at a size that only shows it works)."""
    build.gpu_only = True  # type: ignore[attr-defined]
    return build


def default_cases(device: torch.device) -> list[str]:
    """Every registered case, less the GPU cases on a CPU."""
    return [n for n in PERF_CASES.names() if device.type == "cuda" or not getattr(PERF_CASES.get(n), "gpu_only", False)]


def run_cases(names: Sequence[str], *, device: str, repeats: int, warmup: int, console: Console,
              json_path: Path | None = None) -> list[PerfResult]:
    dev = resolve_device(device)
    chosen = list(names) or default_cases(dev)
    builders = [(n, PERF_CASES.get(n)) for n in chosen]  # unknown names fail before any timing
    results = []
    table = Table(title=f"perf on {device_name(dev)}, {repeats} repeats after {warmup} warm-up")
    for col in ("case", "candidate", "median (IQR)", "peer", "peer median (IQR)", "ratio", "target"):
        table.add_column(col)
    for name, build in builders:
        with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
            torch.manual_seed(0)
            case = build(dev)
            result = measure(name, case, repeats=repeats, warmup=warmup, device=dev)
        results.append(result)
        table.add_row(name, result.candidate, _span(result.median_s, result.q1_s, result.q3_s, result.cpu_s),
                      result.peer, _span(result.peer_median_s, result.peer_q1_s, result.peer_q3_s, result.peer_cpu_s)
                      if result.peer else "—",
                      f"{result.ratio:.3f}" if result.ratio is not None else "—", result.target)
    console.print(table)
    if json_path:
        json_path.write_text(json.dumps({
            "created": now().isoformat(), "device": device_name(dev), "machine": platform.platform(),
            "git_commit": git_commit(), "torch": torch.__version__, "results": [asdict(r) for r in results],
        }, indent=2))
    return results


def _span(med: float | None, q1: float | None, q3: float | None, cpu: float | None = None) -> str:
    """The median wall time with its IQR, and the median CPU time per call."""
    if med is None or q1 is None or q3 is None:
        return "—"
    return f"{1e3 * med:.1f} ms ({1e3 * q1:.1f}–{1e3 * q3:.1f})" + (f", CPU {1e3 * cpu:.0f} ms" if cpu else "")
