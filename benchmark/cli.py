"""The `benchmark` command: run, sweep, attack, prepare, list, results, report, perf.

Bad input ends with one line on stderr and exit status 2; nothing already written is touched.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .errors import BenchmarkError
from .runtime import tune_allocator

DEFAULT_METHODS = ("vanilla", "weight_decay", "hsplid")
DEFAULT_DATASET = "cmnist"
LISTABLE = {
    "methods": "METHODS",
    "datasets": "DATASETS",
    "encoders": "ENCODERS",
    "suites": "SUITES",
    "attacks": "ATTACKS",
    "explainers": "EXPLAINERS",
    "perf": "PERF_CASES",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (and exit 2, as argparse does)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="benchmark", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    run = sub.add_parser("run", help="train methods on a dataset, evaluate, write Parquet results")
    run.add_argument("--method", action="append", help="method name(s), comma-separated or repeated "
                     f"(default: {','.join(DEFAULT_METHODS)})")
    run.add_argument("--dataset", default=DEFAULT_DATASET, help=f"dataset name (default: {DEFAULT_DATASET})")
    run.add_argument("--profile", default="quick", help="quick (default, CPU minutes) or paper (published settings)")
    run.add_argument("--seed", default="0", help="training seed(s), comma-separated (default: 0)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a setting, e.g. train.lr=1e-4 or robustness.samples=256")
    _training(run)
    _common(run)

    sw = sub.add_parser("sweep", help="methods x datasets x seeds x grid on an executor; selection on val, "
                        "final test evaluation; skips finished runs")
    sw.add_argument("--methods", action="append", help=f"method names (default: {','.join(DEFAULT_METHODS)})")
    sw.add_argument("--datasets", action="append", help=f"dataset names (default: {DEFAULT_DATASET})")
    sw.add_argument("--seeds", default="0", help="training seeds, comma-separated (default: 0)")
    sw.add_argument("--profiles", action="append", help="profiles, comma-separated (default: quick)")
    sw.add_argument("--grid", help="a named hyperparameter grid of the methods, e.g. paper (benchmark list methods); "
                    "methods without it run at their defaults")
    sw.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of every run, e.g. train.epochs=5")
    sw.add_argument("--select-eps", help="L-inf eps of the full-image PGD on val that selects a configuration "
                    "(default: the dataset's, e.g. 2/255 on COCO)")
    sw.add_argument("--executor", default="local", choices=["local", "ray"], help="where runs execute (default: local)")
    sw.add_argument("--workers", type=int, help="local: processes (default: CPU cores / --cpus-per-run; 1 runs "
                    "in this process); ray: CPUs of the local Ray instance, in jobs")
    sw.add_argument("--address", help="ray: address of a running cluster, e.g. ray://head:10001 or auto "
                    "(default: start a local instance)")
    sw.add_argument("--cpus-per-run", type=float, default=1, help="CPUs (and torch threads) per run (default: 1)")
    sw.add_argument("--gpus-per-run", type=float, default=0, help="ray: GPUs per run (default: 0)")
    sw.add_argument("--retries", type=int, default=1, help="retries of a run whose worker died (default: 1)")
    _training(sw)
    _common(sw)

    att = sub.add_parser("attack", help="evaluate a saved checkpoint (attacks, corruptions) without retraining")
    att.add_argument("--checkpoint", type=Path, required=True, help="a .pt file written by `benchmark run`")
    att.add_argument("--dataset", help="dataset to evaluate on (default: the one it was trained on)")
    att.add_argument("--attack", action="append", default=[], help="attack name(s), comma-separated or repeated "
                     "(default: the saved robustness grid); each gets the grid's regions and eps values")
    att.add_argument("--suite", action="append", default=[], help="suite(s) to run (default: robustness), "
                     "e.g. robustness,corruptions")
    att.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override an evaluation setting, e.g. robustness.seeds=0,1,2")
    _common(att)

    prep = sub.add_parser("prepare", help="check a dataset's files, fetch public archives, build the prepared cache")
    prep.add_argument("dataset", help="dataset name (benchmark list datasets)")
    prep.add_argument("--data-root", type=Path, help="folder with the dataset files (or BENCHMARK_DATA_ROOT)")
    prep.add_argument("--profile", default="quick", help="the profile whose dataset settings (image size...) "
                      "the cache is built for (default: quick)")
    prep.add_argument("--set", dest="overrides", action="append", default=[], metavar="dataset.KEY=VALUE",
                      help="a dataset setting, e.g. dataset.image_size=224")
    prep.add_argument("--download", action="store_true", help="fetch missing public archives (needs the network)")
    prep.add_argument("--force", action="store_true", help="rebuild the prepared cache even if it exists")
    prep.add_argument("--plugin", action="append", default=[], metavar="FILE", help="import a plugin file first")

    lst = sub.add_parser("list", help="list registered methods, datasets, encoders, suites, attacks, perf cases")
    lst.add_argument("kind", choices=sorted(LISTABLE))
    lst.add_argument("pattern", nargs="?", default="*", help="wildcard filter, e.g. 'l1*'")
    lst.add_argument("--plugin", action="append", default=[], metavar="FILE")

    res = sub.add_parser("results", help="summarise the results store")
    res.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results)")

    rep = sub.add_parser("report", help="the leaderboard: one HTML page plus Markdown and CSV from the results")
    rep.add_argument("--results", type=Path, action="append", help="results folder(s) or files (default: results)")
    rep.add_argument("--out", type=Path, default=Path("results/leaderboard.html"),
                     help="HTML file to write; .md and .csv beside it (default: results/leaderboard.html)")

    perf = sub.add_parser("perf", help="micro-benchmarks: medians and ratios against a peer")
    perf.add_argument("cases", nargs="*", help="case names (default: all)")
    perf.add_argument("--device", default="cpu", help="cpu or cuda")
    perf.add_argument("--repeats", type=int, default=15)
    perf.add_argument("--warmup", type=int, default=3)
    perf.add_argument("--json", type=Path, help="also write the results as JSON")
    return parser


def _training(p: argparse.ArgumentParser) -> None:
    """The options of the commands that train: run and sweep."""
    p.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                   help="also write the resume checkpoint every STEPS training steps (default: at epoch "
                        "ends and every 10 minutes)")
    p.add_argument("--fresh", action="store_true",
                   help="train from scratch even if a checkpoint of the same config exists (default: resume "
                        "an interrupted run, reuse a finished one)")


def _common(p: argparse.ArgumentParser) -> None:
    """The options shared by the commands that train or evaluate: run and attack."""
    p.add_argument("--data-root", type=Path, help="folder with the dataset files (or BENCHMARK_DATA_ROOT)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:i]")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE", help="import a plugin file first")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Logs and pipes get wide tables instead of rich's 80-column fallback.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    tune_allocator()
    try:
        return COMMANDS[args.command](args, console)
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


def os_error(err: OSError) -> str:
    """One line for an operating-system error: the cause and the path it concerns."""
    cause = err.strerror or str(err) or type(err).__name__
    paths = " -> ".join(repr(str(p)) for p in (err.filename, err.filename2) if p is not None)
    hint = " (the last good files, resume checkpoints included, are kept)" if err.errno == errno.ENOSPC else ""
    return f"{cause}: {paths or 'an unnamed file'}{hint}"


def check_out_folder(path: Path, option: str = "--out") -> None:
    """An output folder that exists as a folder or can be created, and can be written: refused in
    one line before any work otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BenchmarkError(f"{option} {str(path)!r} is a file; expected a folder for the results")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        raise BenchmarkError(f"{option} {str(path)!r} cannot be written: permission denied on {str(existing)!r}")


# -- commands ---------------------------------------------------------------------------------
def cmd_run(args, console: Console) -> int:
    from .config import resolve
    from .files import data_root_from
    from .progress import Reporter
    from .registry import load_plugin_file
    from .run import run

    for plugin in args.plugin:
        load_plugin_file(plugin)
    methods = _names(args.method or [",".join(DEFAULT_METHODS)], "--method")
    seeds = _seeds(args.seed)
    _check_checkpoint_every(args.checkpoint_every)
    # Resolving every configuration first rejects unknown names and bad overrides before training.
    for m in methods:
        resolve(m, args.dataset, profile=args.profile, seed=seeds[0], overrides=args.overrides)
    check_out_folder(args.out)

    reporter = Reporter(Console(stderr=True), quiet=args.quiet)
    outcomes = []
    for seed in seeds:
        for m in methods:
            outcome = run(m, args.dataset, profile=args.profile, seed=seed, overrides=args.overrides,
                          data_root=data_root_from(args.data_root), out_dir=args.out, device=args.device,
                          reporter=reporter, resume=not args.fresh, checkpoint_every=args.checkpoint_every)
            outcomes.append(outcome)
            reporter.log(f"  wrote {outcome.results_path}")
    print_summary(console, [o.results_path for o in outcomes])
    return report_failures(outcomes)


def report_failures(outcomes) -> int:
    """One line per failed suite on stderr; exit status 1 when any suite failed, else 0."""
    failed = [(o, suite, reason) for o in outcomes for suite, reason in o.failures.items()]
    for o, suite, reason in failed:
        print(f"benchmark: error: {o.config.method} on {o.config.dataset} (seed {o.config.seed}): suite {suite} "
              f"failed: {reason}; the other suites are in {o.results_path}, and running the same command again "
              "measures only what is missing", file=sys.stderr)
    return 1 if failed else 0


def cmd_sweep(args, console: Console) -> int:
    from .config import _parse_float
    from .files import data_root_from
    from .registry import load_plugin_file
    from .sweep import SweepSpec, WorkerSettings, make_executor, sweep
    from .sweep.table import SweepProgress

    plugins = tuple(str(Path(p).resolve()) for p in args.plugin)
    for plugin in plugins:
        load_plugin_file(plugin)
    eps = None
    if args.select_eps is not None:
        eps = _parse_float(args.select_eps)
        if eps is None or not 0 <= eps < float("inf"):
            raise BenchmarkError(f"--select-eps expects a number >= 0 such as 2/255, got {args.select_eps!r}")
    _check_checkpoint_every(args.checkpoint_every)
    if args.workers is not None and args.workers < 1:
        raise BenchmarkError(f"--workers expects an integer >= 1, got {args.workers}")
    if not args.cpus_per_run > 0 or args.gpus_per_run < 0 or args.retries < 0:
        raise BenchmarkError("--cpus-per-run must be > 0, --gpus-per-run >= 0 and --retries >= 0")
    spec = SweepSpec(methods=tuple(_names(args.methods or [",".join(DEFAULT_METHODS)], "--methods")),
                     datasets=tuple(_names(args.datasets or [DEFAULT_DATASET], "--datasets")),
                     seeds=tuple(_seeds(args.seeds, "--seeds")),
                     profiles=tuple(_names(args.profiles or ["quick"], "--profiles")),
                     grid=args.grid, overrides=tuple(args.overrides), select_eps=eps)
    check_out_folder(args.out)
    out_dir = args.out.resolve()
    root = data_root_from(args.data_root)
    settings = WorkerSettings(out_dir=str(out_dir), data_root=str(root.resolve()) if root else None,
                              device=args.device, threads=max(1, int(args.cpus_per_run)),
                              plugins=plugins, checkpoint_every=args.checkpoint_every, fresh=args.fresh)
    progress = SweepProgress(Console(stderr=True), quiet=args.quiet)
    with make_executor(args.executor, settings, workers=args.workers, address=args.address, cpus=args.cpus_per_run,
                       gpus=args.gpus_per_run, retries=args.retries) as executor:
        outcome = sweep(spec, executor, progress)
    print_sweep(console, outcome, out_dir)
    return 0 if outcome.ok else 1


def print_sweep(console: Console, outcome, out_dir: Path) -> None:
    """Counts, the selected configuration of each group, then the summary of the final evaluations."""
    from .store import read_results
    from .summary import run_tables
    from .sweep.plan import point_label

    counts = outcome.counts
    console.print(f"sweep: {counts.get('done', 0)} run, {counts.get('skipped', 0)} already done, "
                  f"{counts.get('failed', 0)} failed; results in {out_dir}", markup=False)
    table = Table(title="model selection (full-image PGD on val, mean over seeds)")
    for column in ("method", "dataset", "profile", "selected grid point", "robust val", "clean val", "candidates"):
        table.add_column(column, justify="right" if column in ("robust val", "clean val", "candidates") else "left")
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
    for line in problems:
        print(f"benchmark: skipped {line}", file=sys.stderr)
    frame = frame[frame["run_key"].isin({job.key for job in outcome.finals})]
    for summary in run_tables(frame):
        console.print(summary)


def print_summary(console: Console, paths) -> None:
    """The summary tables of freshly written result files."""
    from .store import read_results
    from .summary import run_tables

    frame, _ = read_results(paths)
    for table in run_tables(frame):
        console.print(table)


def cmd_attack(args, console: Console) -> int:
    from .files import data_root_from
    from .progress import Reporter
    from .registry import load_plugin_file
    from .run import evaluate_checkpoint

    for plugin in args.plugin:
        load_plugin_file(plugin)
    check_out_folder(args.out)
    reporter = Reporter(Console(stderr=True), quiet=args.quiet)
    outcome = evaluate_checkpoint(args.checkpoint, dataset=args.dataset,
                                  suites=_names(args.suite or ["robustness"], "--suite"),
                                  attacks=_names(args.attack, "--attack"), overrides=args.overrides,
                                  data_root=data_root_from(args.data_root), out_dir=args.out, device=args.device,
                                  reporter=reporter)
    reporter.log(f"  wrote {outcome.results_path}")
    print_summary(console, [outcome.results_path])
    return report_failures([outcome])


def cmd_prepare(args, console: Console) -> int:
    from .config import resolve
    from .files import data_root_from
    from .registry import DATASETS, load_plugin_file

    for plugin in args.plugin:
        load_plugin_file(plugin)
    other = [o for o in args.overrides if not o.strip().startswith("dataset.")]
    if other:
        raise BenchmarkError(f"prepare takes dataset settings only (dataset.KEY=VALUE), got {other[0]!r}")
    root = data_root_from(args.data_root)
    if root is not None and not root.is_dir():
        if not args.download:
            raise BenchmarkError(f"data root {str(root)!r} does not exist; expected a folder with the "
                                 f"{args.dataset} files (or --download to fetch the public ones into it)")
        root.mkdir(parents=True)
    DATASETS.get(args.dataset)
    # Dataset settings resolve as for a run (profile defaults, then --set); the method is irrelevant.
    config = resolve("vanilla", args.dataset, profile=args.profile, overrides=args.overrides)
    dataset = DATASETS.get(args.dataset)(config.dataset_params, root)
    for line in dataset.prepare(download=args.download, force=args.force):
        print(line)  # plain: paths must not be wrapped or read as markup
    return 0


def cmd_list(args, console: Console) -> int:
    from . import registry

    for plugin in args.plugin:
        registry.load_plugin_file(plugin)
    reg = getattr(registry, LISTABLE[args.kind])
    table = Table(title=f"{args.kind}", show_lines=False)
    table.add_column("name", style="bold")
    table.add_column("description")
    table.add_column("origin", style="dim")
    for entry in reg.entries(args.pattern):
        table.add_row(Text(entry.name), Text(entry.description), Text(entry.origin))
    console.print(table)
    return 0


def cmd_results(args, console: Console) -> int:
    from .store import read_results
    from .summary import run_tables

    if not args.out.exists():
        raise BenchmarkError(f"results folder {str(args.out)!r} does not exist")
    if not args.out.is_dir():
        raise BenchmarkError(f"--out {str(args.out)!r} is a file; expected a results folder")
    frame, problems = read_results([args.out])
    for line in problems:
        print(f"benchmark: skipped {line}", file=sys.stderr)
    if frame.empty:
        console.print(f"no results in {args.out}", markup=False)
        return 0
    console.print(f"{len(frame)} rows from {frame['source_file'].nunique()} files in {args.out}", markup=False)
    for table in run_tables(frame):
        console.print(table)
    return 0


def cmd_report(args, console: Console) -> int:
    from benchmark_leaderboard.report import write_report

    from .provenance import now

    results = args.results or [Path("results")]
    missing = [str(r) for r in results if not r.exists()]
    if missing:
        raise BenchmarkError(f"results folder or file {missing[0]!r} does not exist")
    if args.out.suffix.lower() not in (".html", ".htm") or args.out.is_dir():
        raise BenchmarkError(f"--out expects an .html file, got {'the folder ' if args.out.is_dir() else ''}"
                             f"{str(args.out)!r}")
    check_out_folder(args.out.parent, "--out's folder")
    paths, problems = write_report(results, args.out, now().strftime("%Y-%m-%d %H:%M UTC"))
    for line in problems:
        print(f"benchmark: skipped {line}", file=sys.stderr)
    for path in paths:
        console.print(f"wrote {path}", markup=False)
    return 0


def cmd_perf(args, console: Console) -> int:
    from .perf import run_cases

    if args.repeats < 1 or args.warmup < 0:
        raise BenchmarkError("--repeats must be >= 1 and --warmup >= 0")
    run_cases(args.cases, device=args.device, repeats=args.repeats, warmup=args.warmup, console=console,
              json_path=args.json)
    return 0


def _names(items: Sequence[str], option: str = "") -> list[str]:
    """Names given comma-separated, repeated, or both; an option given only empty names is refused."""
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    if items and not names and option:
        raise BenchmarkError(f"{option} expects at least one name, got {', '.join(map(repr, items))}")
    return names


def _check_checkpoint_every(steps: int | None) -> None:
    if steps is not None and steps < 1:
        raise BenchmarkError(f"--checkpoint-every expects a number of steps >= 1, got {steps}")


def _seeds(text: str, option: str = "--seed") -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise BenchmarkError(f"{option} expects integers separated by commas, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise BenchmarkError(f"{option} expects integers >= 0, got {text!r}")
    return seeds


COMMANDS = {"run": cmd_run, "sweep": cmd_sweep, "attack": cmd_attack, "prepare": cmd_prepare, "list": cmd_list, "results": cmd_results, "report": cmd_report,
            "perf": cmd_perf}

if __name__ == "__main__":
    sys.exit(main())
