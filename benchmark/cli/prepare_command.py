"""`benchmark prepare`: check a dataset's files, fetch public archives, build the prepared cache."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from benchmark.cli.base import Command, add_plugin_option, load_plugins
from benchmark.errors import BenchmarkError
from benchmark.registry import COMMANDS


@COMMANDS.register("prepare")
class Prepare(Command):
    """Check a dataset's files, fetch public archives, build the prepared cache."""

    help = "check a dataset's files, fetch public archives, build the prepared cache"
    order = 40

    def add_arguments(self, prep):
        prep.add_argument("dataset", help="dataset name (benchmark list datasets)")
        prep.add_argument("--data-root", type=Path, help="folder with the dataset files (or BENCHMARK_DATA_ROOT)")
        prep.add_argument("--profile", default="quick", help="the profile whose dataset settings (image size...) "
                          "the cache is built for (default: quick)")
        prep.add_argument("--set", dest="overrides", action="append", default=[], metavar="dataset.KEY=VALUE",
                          help="a dataset setting, e.g. dataset.image_size=224")
        prep.add_argument("--download", action="store_true", help="fetch missing public archives (needs the network)")
        prep.add_argument("--force", action="store_true", help="rebuild the prepared cache even if it exists")
        add_plugin_option(prep)

    def run(self, args, console: Console) -> int:
        from benchmark.config import resolve
        from benchmark.files import data_root_from
        from benchmark.registry import DATASETS

        load_plugins(args.plugin)
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
