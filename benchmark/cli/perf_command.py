"""`benchmark perf`: micro-benchmarks, medians and ratios against a peer (docs/PERFORMANCE.md)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from benchmark.cli.base import Command
from benchmark.errors import BenchmarkError
from benchmark.registry import COMMANDS


@COMMANDS.register("perf")
class Perf(Command):
    """Micro-benchmarks: medians and ratios against a peer."""

    help = "micro-benchmarks: medians and ratios against a peer"
    order = 90

    def add_arguments(self, perf):
        perf.add_argument("cases", nargs="*", help="case names (default: all)")
        perf.add_argument("--device", default="cpu", help="cpu or cuda")
        perf.add_argument("--repeats", type=int, default=15)
        perf.add_argument("--warmup", type=int, default=3)
        perf.add_argument("--json", type=Path, help="also write the results as JSON")

    def run(self, args, console: Console) -> int:
        from benchmark.perf_cases.harness import run_cases

        if args.repeats < 1 or args.warmup < 0:
            raise BenchmarkError("--repeats must be >= 1 and --warmup >= 0")
        run_cases(args.cases, device=args.device, repeats=args.repeats, warmup=args.warmup, console=console,
                  json_path=args.json)
        return 0
