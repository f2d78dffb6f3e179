"""The `benchmark` command: one registered subcommand per module (run, sweep, attack, prepare,
list, results, perf; the leaderboard adds report).

Bad input ends with one line on stderr and exit status 2; nothing already written is touched.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from typing import Sequence

from rich.console import Console

from benchmark.cli.base import OneLineParser
from benchmark.cli.runtime import tune_allocator
from benchmark.distributed import leave
from benchmark.errors import BenchmarkError
from benchmark.provenance import git_commit


def build_parser() -> argparse.ArgumentParser:
    from benchmark.registry import COMMANDS

    parser = OneLineParser(prog="benchmark", description="Saliency-robustness benchmark: train, attack, explain, "
                           "report.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for entry in sorted(COMMANDS.entries(), key=lambda e: (e.obj.order, e.name)):
        command = entry.obj()
        command.add_arguments(sub.add_parser(entry.name, help=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    status = command(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun rank ends here, its group left and its files closed: skipping interpreter
        # shutdown keeps the C++ threads of the communication backend (and of DDP) from aborting
        # a rank that finished (SIGABRT at exit, which fails the whole torchrun job).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def command(argv: Sequence[str] | None = None) -> int:
    """Run one `benchmark` command; bad input is one line on stderr and status 2."""
    from benchmark.registry import COMMANDS

    args = build_parser().parse_args(argv)
    # Logs and pipes get wide tables instead of rich's 80-column fallback.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    tune_allocator()
    git_commit()  # rows name the checkout this process loaded its code from, even if it changes during a sweep
    previous = signal.signal(signal.SIGTERM, _stop) if threading.current_thread() is threading.main_thread() else None
    try:
        return COMMANDS.get(args.command)().run(args, console)
    except BenchmarkError as err:
        print(f"benchmark: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system said no: name the path and the cause
        print(f"benchmark: error: {os_error(err)}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # only plugin code exits from inside a command
        print(f"benchmark: error: plugin code called sys.exit({exit_.code!r}) during `benchmark {args.command}`",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("benchmark: interrupted", file=sys.stderr)
        return 130
    finally:
        leave()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler pre-empting a job, `timeout`, `kill`) stops a command as Ctrl-C does:
    a run writes its resume checkpoint or the suites and pieces it finished before it exits."""
    raise KeyboardInterrupt


def os_error(err: OSError) -> str:
    """One line for an operating-system error: the cause and the path it concerns."""
    cause = err.strerror or str(err) or type(err).__name__
    paths = " -> ".join(repr(str(p)) for p in (err.filename, err.filename2) if p is not None)
    hint = " (the last good files, resume checkpoints included, are kept)" if err.errno == errno.ENOSPC else ""
    return f"{cause}: {paths or 'an unnamed file'}{hint}"
