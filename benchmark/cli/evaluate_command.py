"""`benchmark evaluate`: score a model trained elsewhere (torchvision, timm, your own code, TorchScript)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from benchmark.cli.base import (
    DEFAULT_DATASET,
    Command,
    add_common_options,
    check_out_folder,
    load_plugins,
    names,
    print_summary,
    report_failures,
)
from benchmark.config.values import parse_float
from benchmark.errors import BenchmarkError
from benchmark.registry import COMMANDS


@COMMANDS.register("evaluate")
class Evaluate(Command):
    """Score a model trained elsewhere on a dataset's suites, as the rows of a run."""

    help = "score a model trained elsewhere (torchvision:NAME, timm:NAME, module:factory, torchscript:FILE)"
    order = 35

    def add_arguments(self, ev):
        ev.add_argument("--model", required=True, metavar="SPEC",
                        help="torchvision:resnet50, timm:NAME, module.path:factory, file.py:factory or "
                             "torchscript:FILE")
        ev.add_argument("--weights", type=Path, help="a state dict file for the model (nothing is downloaded)")
        ev.add_argument("--name", help="what rows and the leaderboard call the model (default: from the spec)")
        ev.add_argument("--dataset", default=DEFAULT_DATASET, help=f"dataset (default: {DEFAULT_DATASET})")
        ev.add_argument("--profile", default="quick", help="quick or paper (default: quick)")
        ev.add_argument("--suite", action="append", default=[], help="suite(s) to run (default: the dataset's)")
        ev.add_argument("--mean", help="the model's input normalisation, e.g. 0.485,0.456,0.406 (default: "
                                       "ImageNet's for torchvision and timm, none otherwise)")
        ev.add_argument("--std", help="with --mean, e.g. 0.229,0.224,0.225")
        ev.add_argument("--cam-layer", help="the submodule Grad-CAM explains (default: the last convolution)")
        ev.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="an evaluation setting, e.g. robustness.samples=64")
        add_common_options(ev)

    def run(self, args, console: Console) -> int:
        from benchmark.engine.external_evaluation import evaluate_spec
        from benchmark.engine.weights import Workspace
        from benchmark.files import data_root_from
        from benchmark.progress import Reporter

        load_plugins(args.plugin)
        suites = names(args.suite, "--suite") if args.suite else None
        preprocessing = normalisation(args.mean, args.std)
        check_out_folder(args.out)
        reporter = Reporter(Console(stderr=True), quiet=args.quiet)
        outcome = evaluate_spec(args.model, args.dataset, weights=args.weights, name=args.name, suites=suites,
                                profile=args.profile, overrides=args.overrides, preprocessing=preprocessing,
                                cam_layer=args.cam_layer,
                                workspace=Workspace(args.out, data_root_from(args.data_root), args.device, reporter))
        reporter.log(f"  wrote {outcome.results_path}")
        print_summary(console, [outcome.results_path])
        return report_failures([outcome])


def normalisation(mean: str | None, std: str | None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """--mean and --std as numbers (both or neither)."""
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise BenchmarkError("--mean and --std go together: give both, e.g. --mean 0.5 --std 0.25")
    values = []
    for option, text in (("--mean", mean), ("--std", std)):
        numbers = [parse_float(v) for v in text.split(",")]
        if not numbers or any(n is None for n in numbers):
            raise BenchmarkError(f"{option} expects comma-separated numbers, got {text!r}")
        values.append(tuple(float(n) for n in numbers if n is not None))
    return values[0], values[1]
