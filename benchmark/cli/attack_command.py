"""`benchmark attack`: evaluate a saved checkpoint (attacks, corruptions, ...) without retraining."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from benchmark.cli.base import (
    Command,
    add_common_options,
    check_out_folder,
    load_plugins,
    names,
    print_summary,
    report_failures,
)
from benchmark.registry import COMMANDS


@COMMANDS.register("attack")
class Attack(Command):
    """Evaluate a saved checkpoint without retraining."""

    help = "evaluate a saved checkpoint (attacks, corruptions) without retraining"
    order = 30

    def add_arguments(self, att):
        att.add_argument("--checkpoint", type=Path, required=True, help="a .pt file written by `benchmark run`")
        att.add_argument("--dataset", help="dataset to evaluate on (default: the one it was trained on)")
        att.add_argument("--attack", action="append", default=[], help="attack name(s), comma-separated or "
                         "repeated (default: the saved robustness grid); each gets the grid's regions and eps values")
        att.add_argument("--suite", action="append", default=[], help="suite(s) to run (default: robustness), "
                         "e.g. robustness,corruptions")
        att.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override an evaluation setting, e.g. robustness.seeds=0,1,2")
        add_common_options(att)

    def run(self, args, console: Console) -> int:
        from benchmark.engine.run import evaluate_checkpoint
        from benchmark.engine.weights import Workspace
        from benchmark.files import data_root_from
        from benchmark.progress import Reporter

        load_plugins(args.plugin)
        suites = names(args.suite or ["robustness"], "--suite")
        attacks = names(args.attack, "--attack")
        check_out_folder(args.out)
        reporter = Reporter(Console(stderr=True), quiet=args.quiet)
        outcome = evaluate_checkpoint(args.checkpoint, dataset=args.dataset, suites=suites, attacks=attacks,
                                      overrides=args.overrides,
                                      workspace=Workspace(args.out, data_root_from(args.data_root), args.device,
                                                          reporter))
        reporter.log(f"  wrote {outcome.results_path}")
        print_summary(console, [outcome.results_path])
        return report_failures([outcome])
