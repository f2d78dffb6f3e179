"""`benchmark sweep`: methods x datasets x seeds x a grid on an executor, model selection on val,
final test evaluation of the selected configuration; skips finished runs, resumes interrupted ones."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

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
    print_problems,
    seeds,
)
from benchmark.config.values import parse_float
from benchmark.errors import BenchmarkError
from benchmark.registry import COMMANDS


@COMMANDS.register("sweep")
class Sweep(Command):
    """A grid of runs on a process pool or Ray, selected on validation, evaluated on test."""

    help = "methods x datasets x seeds x grid on an executor; selection on val, final test evaluation; " \
           "skips finished runs"
    order = 20

    def add_arguments(self, sw):
        sw.add_argument("--methods", action="append", help=f"method names (default: {','.join(DEFAULT_METHODS)})")
        sw.add_argument("--datasets", action="append", help=f"dataset names (default: {DEFAULT_DATASET})")
        sw.add_argument("--seeds", default="0", help="training seeds, comma-separated (default: 0)")
        sw.add_argument("--profiles", action="append", help="profiles, comma-separated (default: quick)")
        sw.add_argument("--grid", help="a named hyperparameter grid of the methods, e.g. paper (benchmark list "
                        "methods); methods without it run at their defaults")
        sw.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="a grid axis of your own (repeatable; the grid is the product of the axes and of "
                             "--grid's), e.g. --vary method.lambda_s=0,0.1,0.5")
        sw.add_argument("--all-points", action="store_true",
                        help="no model selection: every grid point and seed is trained and evaluated on test as "
                             "`benchmark run` would (an ablation); default: select on val, then evaluate on test")
        sw.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of every run, e.g. train.epochs=5")
        sw.add_argument("--select", default="paper", choices=["paper", "worst_group"],
                        help="what selects a configuration on val: the paper's full-image PGD accuracy, or the "
                             "worst-group accuracy of the dataset's groups (default: paper)")
        sw.add_argument("--select-eps", help="L-inf eps of the full-image PGD on val that selects a configuration "
                        "(default: the dataset's, e.g. 2/255 on COCO)")
        sw.add_argument("--executor", default="local", choices=["local", "ray"],
                        help="where runs execute (default: local)")
        sw.add_argument("--workers", type=int, help="local: processes (default: CPU cores / --cpus-per-run; 1 runs "
                        "in this process); ray: CPUs of the local Ray instance, in jobs")
        sw.add_argument("--address", help="ray: address of a running cluster, e.g. ray://head:10001 or auto "
                        "(default: start a local instance)")
        sw.add_argument("--cpus-per-run", type=float, default=1, help="CPUs (and torch threads) per run (default: 1)")
        sw.add_argument("--gpus-per-run", type=float, default=0, help="ray: GPUs per run (default: 0)")
        sw.add_argument("--processes-per-run", type=int, help="ranks of each run (DDP, as torchrun would start "
                        "them; default: --gpus-per-run when it is 2 or more, else 1); gloo ranks on a CPU")
        sw.add_argument("--retries", type=int, default=1, help="retries of a run whose worker died (default: 1)")
        add_training_options(sw)
        add_common_options(sw)

    def run(self, args, console: Console) -> int:
        from benchmark.files import data_root_from
        from benchmark.sweep import SweepSpec, WorkerSettings, make_executor, sweep
        from benchmark.sweep.table import SweepProgress

        plugins = tuple(str(Path(p).resolve()) for p in args.plugin)
        load_plugins(plugins)
        eps = None
        if args.select_eps is not None:
            eps = parse_float(args.select_eps)
            if eps is None or not 0 <= eps < float("inf"):
                raise BenchmarkError(f"--select-eps expects a number >= 0 such as 2/255, got {args.select_eps!r}")
        check_checkpoint_every(args.checkpoint_every)
        check_stacking(args)
        if args.workers is not None and args.workers < 1:
            raise BenchmarkError(f"--workers expects an integer >= 1, got {args.workers}")
        if not args.cpus_per_run > 0 or args.gpus_per_run < 0 or args.retries < 0:
            raise BenchmarkError("--cpus-per-run must be > 0, --gpus-per-run >= 0 and --retries >= 0")
        processes = args.processes_per_run or max(1, int(args.gpus_per_run))
        if processes < 1 or (args.gpus_per_run >= 1 and processes > int(args.gpus_per_run)):
            raise BenchmarkError(f"--processes-per-run expects an integer from 1 to the GPUs of a run (one rank "
                                 f"per GPU), got {processes}")
        spec = SweepSpec(methods=tuple(names(args.methods or [",".join(DEFAULT_METHODS)], "--methods")),
                         datasets=tuple(names(args.datasets or [DEFAULT_DATASET], "--datasets")),
                         seeds=tuple(seeds(args.seeds, "--seeds")),
                         profiles=tuple(names(args.profiles or ["quick"], "--profiles")),
                         grid=args.grid, overrides=tuple(args.overrides), select_eps=eps,
                         vary=axes(args.vary), select=not args.all_points, rule=args.select)
        check_out_folder(args.out)
        out_dir = args.out.resolve()
        root = data_root_from(args.data_root)
        settings = WorkerSettings(out_dir=str(out_dir), data_root=str(root.resolve()) if root else None,
                                  device=args.device, threads=max(1, int(args.cpus_per_run)),
                                  plugins=plugins, checkpoint_every=args.checkpoint_every, fresh=args.fresh,
                                  processes=processes, stack_seeds=spec.seeds if args.stack_seeds else ())
        progress = SweepProgress(Console(stderr=True), quiet=args.quiet)
        with make_executor(args.executor, settings, workers=args.workers, address=args.address,
                           cpus=args.cpus_per_run, gpus=args.gpus_per_run, retries=args.retries) as executor:
            outcome = sweep(spec, executor, progress)
        print_sweep(console, outcome, out_dir)
        return 0 if outcome.ok else 1


def axes(items: list[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """--vary KEY=V1,V2 options as (key, values) pairs; a malformed one is a one-line error."""
    out: dict[str, tuple[str, ...]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        section, dot, name = key.strip().partition(".")
        options = tuple(v.strip() for v in values.split(",") if v.strip())
        if not sep or not dot or not section or not name or not options:
            raise BenchmarkError(f"bad --vary {item!r}: expected section.key=value1,value2,... e.g. "
                                 "method.lambda_s=0,0.1")
        if key.strip() in out:
            raise BenchmarkError(f"--vary {key.strip()} is given twice; list all its values in one option")
        out[key.strip()] = options
    return tuple(out.items())


def print_sweep(console: Console, outcome, out_dir: Path) -> None:
    """Counts, the selected configuration of each group, then the summary of the final evaluations."""
    from benchmark.results.store import read_results
    from benchmark.results.summary import run_tables
    from benchmark.sweep.plan import point_label

    counts = outcome.counts
    console.print(f"sweep: {counts.get('done', 0)} run, {counts.get('skipped', 0)} already done, "
                  f"{counts.get('failed', 0)} failed; results in {out_dir}", markup=False)
    if outcome.selections:
        worst = outcome.selections[0].group.rule == "worst_group"
        score = "worst-group val" if worst else "robust val"
        table = Table(title="model selection (" + ("worst-group accuracy" if worst else "full-image PGD") +
                      " on val, mean over seeds)")
        for column in ("method", "dataset", "profile", "selected grid point", score, "clean val", "candidates"):
            table.add_column(column, justify="right" if column in (score, "clean val", "candidates") else "left")
        for sel in outcome.selections:
            best, group = sel.best, sel.group
            table.add_row(Text(group.method), Text(group.dataset), Text(group.profile),
                          Text(point_label(group.points[sel.chosen]) if best else "none"),
                          f"{100 * best.robust:.1f}" if best else "—", f"{100 * best.clean:.1f}" if best else "—",
                          f"{len(sel.scores)}/{len(group.points)}")
        console.print(table)
    for line in outcome.problems + [p for s in outcome.selections for p in s.problems]:
        print(f"benchmark: {line}", file=sys.stderr)
    frame, problems = read_results([out_dir])
    print_problems(problems)
    frame = frame[frame["run_key"].isin({job.key for job in outcome.finals})]
    for summary in run_tables(frame):
        console.print(summary)
