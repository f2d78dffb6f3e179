"""`benchmark list KIND`: the registered plugins of one kind, with descriptions and origin."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from benchmark import registry
from benchmark.cli.base import Command, add_plugin_option, load_plugins
from benchmark.registry import COMMANDS

KINDS = {
    "methods": "METHODS", "datasets": "DATASETS", "eval-sets": "EVAL_SETS", "encoders": "ENCODERS",
    "suites": "SUITES", "attacks": "ATTACKS", "regions": "REGIONS", "corruptions": "CORRUPTIONS",
    "explainers": "EXPLAINERS", "metrics": "METRICS", "commands": "COMMANDS", "perf": "PERF_CASES",
}


@COMMANDS.register("list")
class List(Command):
    """List the registered plugins of one kind."""

    help = "list registered methods, datasets, encoders, attacks, explainers, metrics, ..."
    order = 50

    def add_arguments(self, lst):
        lst.add_argument("kind", choices=sorted(KINDS))
        lst.add_argument("pattern", nargs="?", default="*", help="wildcard filter, e.g. 'l1*'")
        add_plugin_option(lst)

    def run(self, args, console: Console) -> int:
        load_plugins(args.plugin)
        table = Table(title=f"{args.kind}", show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("description")
        table.add_column("origin", style="dim")
        for entry in getattr(registry, KINDS[args.kind]).entries(args.pattern):
            table.add_row(Text(entry.name), Text(entry.description), Text(entry.origin))
        console.print(table)
        return 0
