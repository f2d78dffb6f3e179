"""Measure the effect of benchmark.cli.runtime.tune_allocator on a LeNet-3 training step.

Runs child processes alternately with and without the tuning (the setting is process-wide, so
it cannot be toggled inside one process) and prints the median milliseconds per sample and the
kernel (sys) time of each. Usage: python scripts/allocator_effect.py [ROUNDS] [BATCH]
"""

import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
from benchmark.cli.runtime import tune_allocator
if sys.argv[1] == "tuned":
    tune_allocator()
from benchmark.perf_cases import CMNIST_INFO, cmnist_batch, method_stepper
from benchmark.method import Method
batch = cmnist_batch(torch.device("cpu"), int(sys.argv[2]))
step, _ = method_stepper(Method(None, CMNIST_INFO), torch.device("cpu"), batch)
step(); step()
r0, times = resource.getrusage(resource.RUSAGE_SELF), []
for _ in range(6):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"ms_per_sample": 1e3 * sorted(times)[3] / len(batch), "sys_s": r1.ru_stime - r0.ru_stime}))
"""


def main(rounds: int = 3, batch: int = 64) -> None:
    results = {"default": [], "tuned": []}
    for _ in range(rounds):
        for mode in ("default", "tuned"):
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(batch)], capture_output=True, text=True,
                                 check=True).stdout
            results[mode].append(json.loads(out.strip().splitlines()[-1]))
    for mode, runs in results.items():
        ms = statistics.median(r["ms_per_sample"] for r in runs)
        sys_s = statistics.median(r["sys_s"] for r in runs)
        print(f"{mode:8s} median {ms:.2f} ms/sample, sys {sys_s:.2f} s per 6 steps (batch {batch}, {rounds} rounds)")
    ratio = statistics.median(r["ms_per_sample"] for r in results["default"]) / statistics.median(
        r["ms_per_sample"] for r in results["tuned"])
    print(f"default / tuned = {ratio:.2f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
