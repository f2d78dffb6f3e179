"""`benchmark report`: the leaderboard as a plugin command of the CLI (entry point
`benchmark.commands`), so the engine never imports the leaderboard."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from benchmark.cli.base import Command, add_plugin_option, check_out_folder, load_plugins, print_problems
from benchmark.errors import BenchmarkError


class Report(Command):
    """The leaderboard: one HTML page plus Markdown and CSV from the results."""

    name = "report"
    help = "the leaderboard: one HTML page plus Markdown and CSV from the results"
    order = 70

    def add_arguments(self, rep):
        rep.add_argument("--results", type=Path, action="append", help="results folder(s) or files (default: results)")
        rep.add_argument("--out", type=Path, default=Path("results/leaderboard.html"),
                         help="HTML file to write; .md and .csv beside it (default: results/leaderboard.html)")
        rep.add_argument("--reference", default="vanilla",
                         help="what every other configuration is compared with, sample by sample: a method, a "
                         "configuration's label as the tables print it, or a config key prefix (default: vanilla)")
        add_plugin_option(rep)

    def run(self, args, console: Console) -> int:
        from benchmark.provenance import now
        from benchmark_leaderboard.report import write_report

        load_plugins(args.plugin)  # plugin metrics bring their labels and directions
        results = args.results or [Path("results")]
        missing = [str(r) for r in results if not r.exists()]
        if missing:
            raise BenchmarkError(f"results folder or file {missing[0]!r} does not exist")
        if args.out.suffix.lower() not in (".html", ".htm") or args.out.is_dir():
            raise BenchmarkError(f"--out expects an .html file, got {'the folder ' if args.out.is_dir() else ''}"
                                 f"{str(args.out)!r}")
        check_out_folder(args.out.parent, "--out's folder")
        paths, problems = write_report(results, args.out, now().strftime("%Y-%m-%d %H:%M UTC"), args.reference)
        print_problems(problems)
        for path in paths:
            console.print(f"wrote {path}", markup=False)
        return 0
