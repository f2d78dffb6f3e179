"""`benchmark run`: train methods on a dataset, evaluate, write one Parquet file per (method, seed)."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from benchmark.cli.base import (
    DEFAULT_DATASET,
    DEFAULT_METHODS,
    Command,
    add_common_options,
    add_training_options,
    check_checkpoint_every,
    check_out_folder,
    check_stacking,
    load_plugins,
    names,
    print_summary,
    report_failures,
    seeds,
)
from benchmark.registry import COMMANDS


@COMMANDS.register("run")
class Run(Command):
    """Train methods on a dataset, evaluate, write Parquet results."""

    help = "train methods on a dataset, evaluate, write Parquet results"
    order = 10

    def add_arguments(self, parser):
        parser.add_argument("--method", action="append", help="method name(s), comma-separated or repeated "
                            f"(default: {','.join(DEFAULT_METHODS)})")
        parser.add_argument("--dataset", default=DEFAULT_DATASET, help=f"dataset name (default: {DEFAULT_DATASET})")
        parser.add_argument("--profile", default="quick",
                            help="quick (default, CPU minutes) or paper (published settings)")
        parser.add_argument("--seed", default="0", help="training seed(s), comma-separated (default: 0)")
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="override a setting, e.g. train.lr=1e-4 or robustness.samples=256")
        add_training_options(parser)
        add_common_options(parser)

    def run(self, args, console: Console) -> int:
        from benchmark.config import resolve
        from benchmark.engine.run import run
        from benchmark.engine.weights import Workspace
        from benchmark.files import data_root_from
        from benchmark.progress import Reporter

        load_plugins(args.plugin)
        methods = names(args.method or [",".join(DEFAULT_METHODS)], "--method")
        run_seeds = seeds(args.seed)
        check_checkpoint_every(args.checkpoint_every)
        check_stacking(args)
        # Resolving every configuration first rejects unknown names and bad overrides before training.
        for m in methods:
            resolve(m, args.dataset, profile=args.profile, seed=run_seeds[0], overrides=args.overrides)
        check_out_folder(args.out)
        main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports and writes
        reporter = Reporter(Console(stderr=True), quiet=args.quiet or not main)
        outcomes = []
        where = Workspace(Path(args.out), data_root_from(args.data_root), args.device, reporter)
        if args.stack_seeds and len(run_seeds) > 1:
            from benchmark.engine.stacked import stack_seeds

            for m in methods:
                reporter.log(stack_seeds(m, args.dataset, profile=args.profile, seeds=run_seeds,
                                         overrides=args.overrides, workspace=where))
        for seed in run_seeds:
            for m in methods:
                outcome = run(m, args.dataset, profile=args.profile, seed=seed, overrides=args.overrides,
                              workspace=where, resume=not args.fresh, checkpoint_every=args.checkpoint_every)
                outcomes.append(outcome)
                reporter.log(f"  wrote {outcome.results_path}")
        if main:
            print_summary(console, [o.results_path for o in outcomes])
        return report_failures(outcomes)
