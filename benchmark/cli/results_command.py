"""`benchmark results`: the summary tables of a results folder."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from benchmark.cli.base import Command, add_plugin_option, load_plugins, print_problems
from benchmark.errors import BenchmarkError
from benchmark.registry import COMMANDS


@COMMANDS.register("results")
class Results(Command):
    """Summarise a results folder."""

    help = "summarise the results store"
    order = 60

    def add_arguments(self, res):
        res.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results)")
        res.add_argument("--reference", default="vanilla",
                         help="what every other configuration is compared with, sample by sample: a method, a "
                         "configuration's label as the tables print it, or a config key prefix (default: vanilla)")
        res.add_argument("--relation", action="store_true",
                         help="also: does attribution agreement predict background robustness across the models?")
        add_plugin_option(res)

    def run(self, args, console: Console) -> int:
        from benchmark.results.store import read_results
        from benchmark.results.summary import run_tables

        load_plugins(args.plugin)
        if not args.out.exists():
            raise BenchmarkError(f"results folder {str(args.out)!r} does not exist")
        if not args.out.is_dir():
            raise BenchmarkError(f"--out {str(args.out)!r} is a file; expected a results folder")
        frame, problems = read_results([args.out])
        print_problems(problems)
        if frame.empty:
            console.print(f"no results in {args.out}", markup=False)
            return 0
        console.print(f"{len(frame)} rows from {frame['source_file'].nunique()} files in {args.out}", markup=False)
        for table in run_tables(frame, reference=args.reference):
            console.print(table)
        if args.relation:
            from benchmark.results.summary import relation_tables

            for item in relation_tables(frame):
                console.print(item)
        return 0
