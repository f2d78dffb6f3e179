"""What every subcommand shares: the Command contract, one-line usage errors, common options and
small helpers. A subcommand is a Command class registered in COMMANDS (`benchmark.commands` for
plugins, which is how the leaderboard adds `report`)."""

from __future__ import annotations

import argparse
import os
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

from rich.console import Console

from benchmark.errors import BenchmarkError

DEFAULT_METHODS = ("vanilla", "weight_decay", "hsplid")
DEFAULT_DATASET = "cmnist"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (and exit 2, as argparse does)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class Command(ABC):
    """A `benchmark` subcommand: `help`, its options, and `run` returning the exit status. Bad input
    raises BenchmarkError (one line, exit 2, raised before anything is written)."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    order: ClassVar[int] = 100  # place in `benchmark --help`

    @abstractmethod
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the options."""

    @abstractmethod
    def run(self, args: argparse.Namespace, console: Console) -> int:
        """Do the work; the exit status."""


def add_training_options(p: argparse.ArgumentParser) -> None:
    """The options of the commands that train: run and sweep."""
    p.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                   help="also write the resume checkpoint every STEPS training steps (default: at epoch "
                        "ends and every 10 minutes)")
    p.add_argument("--fresh", action="store_true",
                   help="train from scratch even if a checkpoint of the same config exists (default: resume "
                        "an interrupted run, reuse a finished one)")
    p.add_argument("--stack-seeds", action="store_true",
                   help="train the seeds of a configuration as one vmapped model, then evaluate each (methods "
                        "that allow it; the others train one seed at a time; not with --fresh)")


def add_common_options(p: argparse.ArgumentParser) -> None:
    """The options shared by the commands that train or evaluate."""
    p.add_argument("--data-root", type=Path, help="folder with the dataset files (or BENCHMARK_DATA_ROOT)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:i]")
    add_plugin_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress output")


def add_plugin_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="FILE", help="import a plugin file first")


def load_plugins(paths: Sequence[str | Path]) -> None:
    from benchmark.registry import load_plugin_file

    for path in paths:
        load_plugin_file(path)


def names(items: Sequence[str], option: str = "") -> list[str]:
    """Names given comma-separated, repeated, or both; an option given only empty names is refused."""
    found = [n.strip() for item in items for n in item.split(",") if n.strip()]
    if items and not found and option:
        raise BenchmarkError(f"{option} expects at least one name, got {', '.join(map(repr, items))}")
    return found


def seeds(text: str, option: str = "--seed") -> list[int]:
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise BenchmarkError(f"{option} expects integers separated by commas, got {text!r}") from None
    if not values or any(s < 0 for s in values):
        raise BenchmarkError(f"{option} expects integers >= 0, got {text!r}")
    return values


def check_stacking(args: argparse.Namespace) -> None:
    if args.stack_seeds and args.fresh:
        raise BenchmarkError("--stack-seeds keeps finished checkpoints; it cannot be combined with --fresh")


def check_checkpoint_every(steps: int | None) -> None:
    if steps is not None and steps < 1:
        raise BenchmarkError(f"--checkpoint-every expects a number of steps >= 1, got {steps}")


def check_out_folder(path: Path, option: str = "--out") -> None:
    """An output folder that exists as a folder or can be created, and can be written: refused in
    one line before any work otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BenchmarkError(f"{option} {str(path)!r} is a file; expected a folder for the results")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        raise BenchmarkError(f"{option} {str(path)!r} cannot be written: permission denied on {str(existing)!r}")


def print_summary(console: Console, paths: Sequence[Path], **options: Any) -> None:
    """The summary tables of freshly written result files."""
    from benchmark.results.store import read_results
    from benchmark.results.summary import run_tables

    frame, _ = read_results(paths)
    for table in run_tables(frame, **options):
        console.print(table)


def report_failures(outcomes) -> int:
    """One line per failed suite on stderr; exit status 1 when any suite failed, else 0."""
    failed = [(o, suite, reason) for o in outcomes for suite, reason in o.failures.items()]
    for o, suite, reason in failed:
        print(f"benchmark: error: {o.config.method} on {o.config.dataset} (seed {o.config.seed}): suite {suite} "
              f"failed: {reason}; the other suites are in {o.results_path}, and running the same command again "
              "measures only what is missing", file=sys.stderr)
    return 1 if failed else 0


def print_problems(problems: Sequence[str]) -> None:
    for line in problems:
        print(f"benchmark: skipped {line}", file=sys.stderr)
