"""What a sweep runs: candidate trainings over methods x datasets x profiles x grid points x seeds,
then one final test evaluation per seed of each group's selected configuration.

Every job is named by the key of the config it produces, so a job whose results exist is known
to be done before anything starts, by any sweep that plans it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

from benchmark.config import RUN_PREFIX, RunConfig, merge_layers, resolve, start_layers
from benchmark.config.values import parse_overrides
from benchmark.engine.start import carried
from benchmark.engine.trained import checkpoint_config
from benchmark.errors import ConfigError
from benchmark.registry import DATASETS, METHODS
from benchmark.results.layout import RunFiles

TRAINED_SECTIONS = ("run", "train", "method", "dataset")  # what a final evaluation keeps from its candidate


@dataclass(frozen=True)
class SweepSpec:
    """The grid a user asks for (`benchmark sweep` options)."""

    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    profiles: tuple[str, ...] = ("quick",)
    grid: str | None = None  # a named grid of each method (methods without it run at their defaults)
    overrides: tuple[str, ...] = ()  # --set KEY=VALUE, applied to every run
    select_eps: float | None = None  # None: each dataset's `selection_eps`
    vary: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # --vary axes: ("method.lambda_s", ("0", "0.1")), ...
    select: bool = True  # False (--all-points): every point is a `benchmark run` on test, nothing is selected
    rule: Literal["paper", "worst_group"] = "paper"  # what selects: robust val accuracy, or worst-group val accuracy


@dataclass(frozen=True)
class Job:
    """One unit of work for an executor: train the starting weights that candidates share (a
    `train.init_from=run:<method>`), train a candidate, evaluate a selected one on test, or (a
    sweep without selection) train and evaluate a point as `benchmark run` would."""

    stage: Literal["start", "candidate", "final", "run"]
    key: str  # run key of the config whose results this job writes
    method: str
    dataset: str
    profile: str
    seed: int
    point: tuple[tuple[str, Any], ...]  # the grid point, as ("method.lambda_s", 0.1) pairs
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)
    results_path: str = ""
    checkpoint: str | None = None  # candidate: where it writes its checkpoint; final: what it evaluates
    suites: tuple[str, ...] = ()  # final: the suites of the profile
    needs: str | None = None  # the key of the start job whose checkpoint this job trains from

    @property
    def label(self) -> str:
        return point_label(self.point)


@dataclass
class Group:
    """The candidates among which one configuration is selected: one method, dataset and profile."""

    method: str
    dataset: str
    profile: str
    points: list[tuple[tuple[str, Any], ...]]
    seeds: tuple[int, ...]
    eps: float
    rule: str = "paper"
    candidates: dict[tuple[int, int], Job] = field(default_factory=dict)  # (point index, seed) -> job
    starts: dict[str, Job] = field(default_factory=dict)  # key -> the start jobs its candidates need

    @property
    def name(self) -> str:
        return f"{self.method} on {self.dataset} ({self.profile})"


def point_label(point: Sequence[tuple[str, Any]]) -> str:
    return " ".join(f"{k.split('.', 1)[-1]}={v:g}" if isinstance(v, float) else f"{k.split('.', 1)[-1]}={v}"
                    for k, v in point) or "defaults"


def grid_points(method: str, grid: str | None,
                vary: Sequence[tuple[str, Sequence[Any]]] = ()) -> list[tuple[tuple[str, Any], ...]]:
    """The points of a method's named grid (the product of its axes, or its list of points) times
    the product of the `vary` axes (which win over a grid's setting of the same key); one empty
    point without either."""
    named = METHODS.get(method).grids.get(grid) if grid else None
    if isinstance(named, list):
        base = [dict(point) for point in named]
    else:
        base = [dict(zip(sorted(named or {}), values))
                for values in itertools.product(*((named or {})[n] for n in sorted(named or {})))]
    axes = dict(vary)
    extra = [dict(zip(sorted(axes), values)) for values in itertools.product(*(axes[n] for n in sorted(axes)))]
    return [tuple(sorted({**point, **more}.items())) for point in base for more in extra]


def point_layer(point: Sequence[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    """("method.lambda_s", 0.1) pairs as a config layer {"method": {"lambda_s": 0.1}}."""
    layer: dict[str, dict[str, Any]] = {}
    for key, value in point:
        section, _, name = key.partition(".")
        layer.setdefault(section, {})[name] = value
    return layer


def selection_layer(eps: float, rule: str = "paper") -> dict[str, dict[str, Any]]:
    """What a candidate evaluates, on val only: the paper's rule needs clean accuracy and full-image
    PGD (no object mask); the worst-group rule clean accuracy and the dataset's groups."""
    if rule == "worst_group":
        return {"eval": {"suites": ["accuracy", "group_accuracy"], "splits": ["val"]},
                "group_accuracy": {"eval_set": "val"}}
    return {"eval": {"suites": ["accuracy", "robustness"], "splits": ["val"]},
            "robustness": {"grid": {"pgd": {"full": [eps]}}, "norm": "linf", "eval_set": "val", "sanity": False}}


def plan(spec: SweepSpec, out_dir) -> list[Group]:
    """Resolve every candidate (rejecting bad names and settings before any work) into groups."""
    if not spec.methods or not spec.datasets or not spec.seeds or not spec.profiles:
        raise ConfigError("a sweep needs at least one method, dataset, seed and profile")
    if spec.grid and not any(spec.grid in METHODS.get(m).grids for m in spec.methods):
        known = sorted({g for m in spec.methods for g in METHODS.get(m).grids})
        raise ConfigError(f"no method of this sweep has a grid named {spec.grid!r}; "
                          f"expected one of {', '.join(known) or '(none)'}")
    user = parse_overrides(spec.overrides)
    groups = []
    for profile, dataset, method in itertools.product(spec.profiles, spec.datasets, spec.methods):
        eps = spec.select_eps if spec.select_eps is not None else DATASETS.get(dataset).selection_eps
        group = Group(method, dataset, profile, grid_points(method, spec.grid, spec.vary), spec.seeds, eps, spec.rule)
        for (index, point), seed in itertools.product(enumerate(group.points), spec.seeds):
            layers = merge_layers(user, point_layer(point), selection_layer(eps, spec.rule) if spec.select else {})
            config = resolve(method, dataset, profile=profile, seed=seed, overrides=layers)
            files = RunFiles.of(config, out_dir)
            start = start_job(config, out_dir)
            if start is not None:
                group.starts[start.key] = start
            stage: Literal["candidate", "run"] = "candidate" if spec.select else "run"
            group.candidates[(index, seed)] = Job(stage, config.key(), method, dataset, profile, seed, point,
                                                  layers, str(files.results), str(files.checkpoint),
                                                  needs=start.key if start else None)
        groups.append(group)
    return groups


def start_job(config: RunConfig, out_dir) -> Job | None:
    """The run a candidate's `train.init_from=run:<method>` starts from, as a job (None without one)."""
    if not (config.train.init_from or "").startswith(RUN_PREFIX):
        return None
    method, layers = start_layers(config.train.init_from or "", config.dataset, config.profile, carried(config))
    start = resolve(method, config.dataset, profile=config.profile, seed=config.seed, overrides=layers)
    files = RunFiles.of(start, out_dir)
    return Job("start", start.key(), method, config.dataset, config.profile, config.seed, (), layers,
               str(files.results), str(files.checkpoint))


def final_jobs(group: Group, index: int, spec: SweepSpec, out_dir) -> list[Job]:
    """The test evaluation of the selected point, one per seed, from each seed's candidate checkpoint.

    It evaluates exactly what `benchmark run` with that point would (same suites and settings, so
    the same config key), with the weights the candidate trained."""
    point = group.points[index]
    jobs = []
    for seed in group.seeds:
        candidate = group.candidates[(index, seed)]
        plain = plain_config(group, index, spec, seed)
        evaluation = {k: v for k, v in plain.to_dict().items() if k not in TRAINED_SECTIONS}
        trained = resolve(group.method, group.dataset, profile=group.profile, seed=seed, overrides=candidate.overrides)
        config = checkpoint_config(trained.to_dict(), suites=plain.eval.suites, overrides=evaluation)
        jobs.append(Job("final", config.key(), group.method, group.dataset, group.profile, seed, point,
                        evaluation, str(RunFiles.of(config, out_dir).results), candidate.checkpoint,
                        tuple(plain.eval.suites)))
    return jobs


def plain_config(group: Group, index: int, spec: SweepSpec, seed: int) -> RunConfig:
    """The config `benchmark run` would resolve for this grid point and seed."""
    return resolve(group.method, group.dataset, profile=group.profile, seed=seed,
                   overrides=merge_layers(parse_overrides(spec.overrides), point_layer(group.points[index])))
