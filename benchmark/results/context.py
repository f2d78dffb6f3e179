"""What a results file says about itself beyond its rows, so that its readers need no registry and
no configuration resolution: the declarations of the metrics it holds (label, unit, direction, how
they aggregate), the settings `benchmark run` would use for its method (configurations are named
by how they differ from them) and its dataset's ranking. The writer stores it as JSON in the
Parquet file's metadata; a board of old results therefore reads the same after code changes.

Files written before the context existed are read through today's registries (`legacy`), as they
always were.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Mapping

from benchmark.dataset import Ranking

KEY = b"benchmark.context"  # the Parquet metadata key
VERSION = 1


@dataclass(frozen=True)
class Declaration:
    """The meaning of a metric name, as the file that holds it declares it (benchmark/metrics)."""

    name: str
    label: str
    unit: str = "value"  # fraction (shown in %), probability, ratio, seconds, count, value
    higher_is_better: bool | None = None  # None: a diagnostic, never ranked
    samples: str = "none"  # proportion, mean or none: how a row aggregates its samples
    doc: str = ""

    def percent(self) -> bool:
        return self.unit == "fraction"


def undeclared(name: str) -> Declaration:
    """A metric no declaration names (a foreign file's): its own name as label, never ranked."""
    return Declaration(name, name)


@dataclass(frozen=True)
class Context:
    """A file's context; `legacy` when the file predates it (then today's registries answer)."""

    defaults: Mapping[str, str] = field(default_factory=dict)  # flat settings: "section.key" -> JSON
    ranking: Ranking | None = None
    metrics: Mapping[str, Declaration] = field(default_factory=dict)
    legacy: bool = False

    def declaration(self, metric: str) -> Declaration:
        if metric in self.metrics:
            return self.metrics[metric]
        return registered_declaration(metric) if self.legacy else undeclared(metric)


def flat_settings(config_json: str) -> dict[str, str]:
    """A run's config as {"section.key": value as JSON}, without what every run differs in."""
    try:
        config = json.loads(config_json or "{}")
    except ValueError:
        return {}
    flat: dict[str, str] = {}
    for section, values in config.items():
        if isinstance(values, dict):
            for key, value in values.items():
                flat[f"{section}.{key}"] = json.dumps(value, sort_keys=True)
    return {k: v for k, v in flat.items() if k not in IGNORED}


IGNORED = ("run.seed", "run.versions", "run.dataset", "run.method", "run.profile")


# --- the writer's side: what today's registries say, frozen into the file -------------------------

def registered_declaration(metric: str) -> Declaration:
    from benchmark.metrics import metric_of

    declared = metric_of(metric)
    return Declaration(metric, declared.label or metric, declared.unit, declared.higher_is_better,
                       declared.samples, (declared.__doc__ or "").strip())


def registered_defaults(method: str, dataset: str, profile: str) -> dict[str, str]:
    """The flat settings `benchmark run` would use for this method, or nothing when they cannot be
    resolved here (a plugin not installed, an external model)."""
    from benchmark.config import resolve
    from benchmark.errors import BenchmarkError

    try:
        return flat_settings(resolve(method, dataset, profile=profile).to_json())
    except (BenchmarkError, KeyError, ValueError):
        return {}


def registered_ranking(dataset: str) -> Ranking | None:
    from benchmark.registry import DATASETS

    return DATASETS.get(dataset).ranking if dataset in DATASETS else None


def metric_names(measurements: Iterable[Any]) -> set[str]:
    """The metrics rows name: their own, and the agreement metric a sanity row's `extra` names."""
    names = {m.metric for m in measurements}
    return names | {m.extra["agreement"] for m in measurements if isinstance(m.extra.get("agreement"), str)}


def context_json(method: str, dataset: str, profile: str, metrics: Iterable[str]) -> str:
    """The context a writer stores beside a run's rows."""
    ranking = registered_ranking(dataset)
    return json.dumps({"version": VERSION, "defaults": registered_defaults(method, dataset, profile),
                       "ranking": asdict(ranking) if ranking is not None else None,
                       "metrics": {m: asdict(registered_declaration(m)) for m in sorted(set(metrics))}},
                      sort_keys=True)


# --- the readers' side ---------------------------------------------------------------------------

@lru_cache(maxsize=256)
def parsed(text: str) -> Context:
    data = json.loads(text)
    ranking = data.get("ranking")
    return Context(defaults=dict(data.get("defaults") or {}),
                   ranking=Ranking(**ranking) if ranking else None,
                   metrics={name: Declaration(**d) for name, d in (data.get("metrics") or {}).items()})


@lru_cache(maxsize=256)
def legacy(method: str, dataset: str, profile: str) -> Context:
    return Context(defaults=registered_defaults(method, dataset, profile), ranking=registered_ranking(dataset),
                   legacy=True)


def context_of(row: Mapping[str, Any]) -> Context:
    """The context of the file a row came from (a row of an old file, or one built by hand: today's
    registries')."""
    text = row.get("context")
    if isinstance(text, str) and text:
        return parsed(text)
    return legacy(str(row.get("method") or ""), str(row.get("dataset") or ""), str(row.get("profile") or "quick"))


def newest_context(rows: Any) -> Context:
    """The context of the most recently written of these rows' files (a DataFrame's rows): what a
    board of several files reads its ranking and metric labels from."""
    if "created" in rows and rows["created"].notna().any():
        rows = rows.sort_values("created", kind="stable")
    return context_of(rows.iloc[-1].to_dict()) if len(rows) else Context(legacy=True)


def declaration_of(row: Mapping[str, Any], metric: str | None = None) -> Declaration:
    """The declaration of `metric` (default: the row's own) in the row's file."""
    return context_of(row).declaration(metric or str(row["metric"]))
