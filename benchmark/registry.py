"""One generic registry for every plugin kind: methods, datasets, encoders, suites, attacks...

Built-in entries register themselves with a decorator beside their definition; the registry
imports its built-in package on first use (so one new file is enough to add an entry).
Third-party packages contribute through an entry-point group, loaded only when asked for.
A plugin that fails to load is reported as a warning when listing, and as a one-line error
when it is the entry requested.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.util
import pkgutil
import re
import sys
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

from benchmark.errors import BenchmarkError, UnknownNameError

if TYPE_CHECKING:  # types only: the contracts live in higher layers and import this module
    from benchmark.attacks import Attack
    from benchmark.attribution import Explainer
    from benchmark.dataset import BenchmarkDataset
    from benchmark.engine.evaluate import Suite
    from benchmark.method import Method
    from benchmark.metrics import Metric

T = TypeVar("T")

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str
    origin: str


def first_sentence(text: str | None) -> str:
    """The first sentence of a docstring's first paragraph, over as many lines as it spans (a
    period ends it only before a capital letter or the paragraph's end, so "et al. 2017" does not)."""
    paragraph = " ".join((text or "").strip().split("\n\n")[0].split())
    match = re.search(r"\.(?=\s+[A-Z]|$)", paragraph)
    return paragraph[: match.end()] if match else paragraph


# The plugin folders of a checkout, by the import names the install gives them. An editable install
# maps these names to the folders of the checkout it was made from; a second checkout run from its
# own folder must see its own methods/ and datasets/ (a method file added there is the one used).
CHECKOUT_FOLDERS = {"benchmark_methods": "methods", "benchmark_datasets": "datasets"}


def builtin_package(name: str) -> ModuleType:
    """The package of built-in plugins `name`, read from the checkout this `benchmark` package
    was loaded from when it has that folder (an installed copy keeps its own)."""
    package = importlib.import_module(name)
    folder = CHECKOUT_FOLDERS.get(name)
    here = Path(__file__).resolve().parents[1] / folder if folder else None
    if here is not None and here.is_dir() and [str(here)] != [str(Path(p).resolve()) for p in package.__path__]:
        package.__path__ = [str(here)]
    return package


class Registry(Generic[T]):
    """Named entries of one kind, with lazy built-ins and entry-point plugins."""

    def __init__(self, kind: str, *, builtin: str | None = None, group: str | None = None):
        self.kind = kind
        self.group = group
        self._builtin = builtin
        self._entries: dict[str, Entry[T]] = {}
        self._pending: dict[str, EntryPoint] = {}
        self._discovered = False

    # -- registration -------------------------------------------------------------------
    def register(self, name: str, *, description: str | None = None) -> Callable[[T], T]:
        """Decorator: register the decorated object under `name`.

        A class with an empty `name` attribute is given its registered name, so that a method or
        dataset knows what it is called without repeating it.
        """

        def decorate(obj: T) -> T:
            self.add(name, obj, description=description)
            if isinstance(obj, type) and getattr(obj, "name", None) == "":
                setattr(obj, "name", name)
            return obj

        return decorate

    def add(self, name: str, obj: T, *, description: str | None = None, origin: str | None = None) -> None:
        if not _NAME.match(name):
            raise BenchmarkError(
                f"invalid {self.kind} name {name!r}: expected lowercase letters, digits, '_' or '-'"
            )
        known = self._entries.get(name)
        if known is not None and known.obj is not obj:
            raise BenchmarkError(
                f"{self.kind} {name!r} is registered twice: by {known.origin} and by {_origin_of(obj)}"
            )
        self._entries[name] = Entry(
            name=name,
            obj=obj,
            description=description or first_sentence(getattr(obj, "__doc__", None)),
            origin=origin or _origin_of(obj),
        )
        self._pending.pop(name, None)

    # -- lookup -------------------------------------------------------------------------
    def get(self, name: str) -> T:
        self._discover()
        if name in self._entries:
            return self._entries[name].obj
        if name in self._pending:
            self._load(name)
            return self._entries[name].obj
        raise UnknownNameError(self._unknown_message(name))

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries or name in self._pending

    def names(self, pattern: str = "*") -> list[str]:
        self._discover()
        return sorted(n for n in {*self._entries, *self._pending} if fnmatch.fnmatch(n, pattern))

    def entries(self, pattern: str = "*") -> list[Entry[T]]:
        """Every matching entry, loading plugins; a plugin that fails is warned about and left out."""
        for name in self.names(pattern):
            if name in self._pending:
                try:
                    self._load(name)
                except BenchmarkError as err:
                    warnings.warn(str(err), stacklevel=2)
        return [self._entries[n] for n in self.names(pattern) if n in self._entries]

    # -- discovery ----------------------------------------------------------------------
    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        if self._builtin:
            package = builtin_package(self._builtin)
            for module in pkgutil.iter_modules(getattr(package, "__path__", [])):
                if not module.name.startswith("_"):
                    importlib.import_module(f"{self._builtin}.{module.name}")
        if self.group:
            for ep in entry_points(group=self.group):
                if ep.name not in self._entries:
                    self._pending[ep.name] = ep

    def _load(self, name: str) -> None:
        ep = self._pending[name]
        try:
            obj = ep.load()
        except Exception as err:  # a broken plugin must not take the whole tool down
            raise BenchmarkError(
                f"{self.kind} plugin {name!r} ({ep.value}) failed to load: {type(err).__name__}: {err}"
            ) from err
        # Importing the plugin may already have registered it through the decorator.
        if name not in self._entries:
            dist = getattr(ep, "dist", None)
            ours = dist is not None and dist.name == "saliency-robustness-benchmark"
            self.add(name, obj, origin="built-in" if ours else f"plugin {dist.name}" if dist else f"plugin {ep.value}")

    def _unknown_message(self, name: str) -> str:
        known = self.names()
        if not known:
            return f"unknown {self.kind} {name!r}; none is registered"
        # Substring matches first (abbreviations such as 'wd'), then the most similar names.
        close = [k for k in known if name and (name in k or k in name)]
        close += [k for k in difflib.get_close_matches(name, known, n=3, cutoff=0.0) if k not in close]
        return (f"unknown {self.kind} {name!r}; did you mean {' or '.join(close[:3])}? "
                f"(all {len(known)}: {', '.join(known)})")


def _origin_of(obj: object) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return "built-in" if module.split(".")[0] in {"benchmark", "benchmark_methods", "benchmark_datasets"} else module


def load_plugin_file(path: str | Path) -> None:
    """Import a single plugin file (its decorators register what it defines)."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".py":
        raise BenchmarkError(f"plugin file {str(path)!r} not found: expected a .py file")
    module_name = f"benchmark_plugin_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}"
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise BenchmarkError(f"plugin file {str(path)!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BenchmarkError:
        del sys.modules[module_name]
        raise
    except (Exception, SystemExit) as err:  # a plugin that exits while imported must not end the CLI silently
        del sys.modules[module_name]
        raise BenchmarkError(f"plugin file {str(path)!r} failed to import: {type(err).__name__}: {err}") from None


# The plugin kinds of the benchmark, each with the entry-point group outsiders use.
METHODS: Registry[type[Method]] = Registry("method", builtin="benchmark_methods", group="benchmark.methods")
DATASETS: Registry[type[BenchmarkDataset]] = Registry("dataset", builtin="benchmark_datasets",
                                                      group="benchmark.datasets")
EVAL_SETS: Registry[Any] = Registry("eval set", builtin="benchmark_datasets", group="benchmark.eval_sets")
ENCODERS: Registry[Any] = Registry("encoder", builtin="benchmark.models", group="benchmark.encoders")
SUITES: Registry[type[Suite]] = Registry("suite", builtin="benchmark.suites", group="benchmark.suites")
ATTACKS: Registry[type[Attack]] = Registry("attack", builtin="benchmark.attacks", group="benchmark.attacks")
EXPLAINERS: Registry[type[Explainer]] = Registry("explainer", builtin="benchmark.attribution",
                                                 group="benchmark.explainers")
METRICS: Registry[type[Metric]] = Registry("metric", builtin="benchmark.metrics", group="benchmark.metrics")
CORRUPTIONS: Registry[Any] = Registry("corruption", builtin="benchmark.data.image_corruptions",
                                 group="benchmark.corruptions")
REGIONS: Registry[Any] = Registry("region", builtin="benchmark.attacks.regions", group="benchmark.regions")
PERF_CASES: Registry[Any] = Registry("perf case", builtin="benchmark.perf_cases", group="benchmark.perf_cases")
COMMANDS: Registry[Any] = Registry("command", builtin="benchmark.cli", group="benchmark.commands")
