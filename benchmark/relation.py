"""Does looking at the object predict robustness to the background? The relation, per board.

Across models: every configuration of a dataset and profile (a method, a grid point, an external
model) is one point, its numbers averaged over its training seeds (seeds of one configuration
share its effect, so counting them as separate models would overstate the evidence); for each
explainer's agreement metric and each background robustness number, Spearman's rho over the
configurations with a bootstrap interval over configurations, and the partial rho given clean
accuracy, so that a relation which only says "better models are better at everything" shows as such. Explainers are
ranked by how well their relevance mass predicts the board's main background robustness number.
Within a model: from the per-sample records, whether the samples whose relevance mass lies more on
the object are more often robust (upper minus lower half by mass, with a bootstrap interval).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .aggregate import Cell, RunColumn, Table, cell_of
from .columns import Column
from .correlation import ModelBootstrap, split_half_difference
from .stats import LEVEL

AGREEMENT = ("relevance_mass_accuracy", "pixel_auroc", "pointing_game")
MIN_CONFIGURATIONS = 5  # a rank correlation of fewer points says next to nothing
CLEAN = "clean test"
CORRUPTIONS = "corruptions (mean)"


@dataclass
class Correlation:
    explainer: str
    metric: str  # the agreement metric
    target: str  # the robustness column
    rho: float
    low: float
    high: float
    partial: float  # given clean accuracy
    partial_low: float
    partial_high: float
    models: int


@dataclass
class SplitHalf:
    """Within one configuration: robust accuracy of its upper half by relevance mass minus its lower half."""

    label: str
    difference: float
    low: float
    high: float
    runs: int
    samples: int


@dataclass
class Point:
    label: str
    x: Cell
    y: Cell


@dataclass
class Relation:
    target: str = ""  # the main background robustness number
    metric: str = ""  # the main agreement metric
    correlations: list[Correlation] = field(default_factory=list)  # every pair
    ranking: list[Correlation] = field(default_factory=list)  # one per explainer: main metric and target, best first
    points: list[Point] = field(default_factory=list)  # per configuration, for the best explainer
    within: list[SplitHalf] = field(default_factory=list)
    models: int = 0  # trained models (configurations x their seeds) behind the points
    configurations: int = 0  # the points: rho is over these
    verdict: str = ""
    reason: str = ""  # why nothing was computed
    # The best explainer's rho and partial-rho intervals at the Bonferroni-adjusted level (one test
    # per explainer), which the verdict uses: picking the best of nine inflates it otherwise.
    adjusted: tuple[tuple[float, float], tuple[float, float]] = ((np.nan, np.nan), (np.nan, np.nan))

    @property
    def best(self) -> Correlation | None:
        return self.ranking[0] if self.ranking else None


def relation_of(table: Table, target: Column | None, label=lambda group: str(group[2]), seed: int = 0) -> Relation:
    """The relation of a board's table; `target` is its main robustness column (else the first
    background one), `label` names a configuration."""
    agreement = [c for c in table.columns.values() if c.kind == "attribution" and c.metric in AGREEMENT]
    robust = [c for c in table.columns.values() if c.kind == "robust" and c.region != "full"]
    if target is None or target.kind != "robust" or target.region == "full":
        target = robust[0] if robust else None
    if target is None or not agreement or CLEAN not in table.columns:
        return Relation(reason="no relation: the board needs attribution agreement, a background attack and "
                               "clean test accuracy on the same models")
    models = model_values(table, [*agreement, *robust, table.columns[CLEAN]])
    configurations = sorted({group for group, _ in models})
    if len(configurations) < MIN_CONFIGURATIONS:
        return Relation(target.key, models=len(models), configurations=len(configurations),
                        reason=f"no relation: it needs at least {MIN_CONFIGURATIONS} configurations (methods, grid "
                               f"points or external models) with attribution and attack results; this board has "
                               f"{len(configurations)}")
    names = list(models[next(iter(models))])
    variables = {name: np.array([np.mean([v[name] for (g, _), v in models.items() if g == group])
                                 for group in configurations]) for name in names}
    boot = ModelBootstrap(variables, seed=seed)
    targets = [c.key for c in robust] + ([CORRUPTIONS] if CORRUPTIONS in variables else [])
    correlations = [Correlation(c.explainer or "", c.metric, t, *boot.rho(c.key, t), *boot.partial(c.key, t, CLEAN),
                                models=len(configurations)) for c in agreement for t in targets]
    metric = "relevance_mass_accuracy" if any(c.metric == "relevance_mass_accuracy" for c in agreement) \
        else agreement[0].metric
    ranking = sorted((c for c in correlations if c.metric == metric and c.target == target.key),
                     key=lambda c: -c.rho if np.isfinite(c.rho) else np.inf)
    relation = Relation(target.key, metric, correlations, ranking, models=len(models),
                        configurations=len(configurations))
    best = relation.best
    if best is not None:
        column = next(c for c in agreement if c.metric == metric and c.explainer == best.explainer)
        relation.points = [Point(label(g), cell_of(table.runs[g][column.key], column),
                                 cell_of(table.runs[g][target.key], target)) for g in configurations]
        relation.within = within_models(table, column, target, configurations, label, seed)
    if best is not None:  # the best of several explainers: its verdict is held to a Bonferroni-adjusted level
        level = 1 - (1 - LEVEL) / len(ranking)
        key = next(c.key for c in agreement if c.metric == metric and c.explainer == best.explainer)
        relation.adjusted = (boot.rho(key, target.key, level)[1:], boot.partial(key, target.key, CLEAN, level)[1:])
    relation.verdict = verdict(relation)
    return relation


def model_values(table: Table, columns: list[Column]) -> dict[tuple, dict[str, float]]:
    """(configuration, seed) -> the value of every column, for the models that have them all (and
    the mean of their corruption columns, when every model has some)."""
    out: dict[tuple, dict[str, float]] = defaultdict(dict)
    corruptions: dict[tuple, list[float]] = defaultdict(list)
    wanted = {c.key for c in columns}
    for group, by_column in table.runs.items():
        for key, runs in by_column.items():
            kind = table.columns[key].kind
            for run in runs:
                if key in wanted:
                    out[(group, run.seed)][key] = run.value
                elif kind == "corruption":
                    corruptions[(group, run.seed)].append(run.value)
    complete = {k: v for k, v in out.items() if set(v) == wanted}
    if complete and all(corruptions.get(k) for k in complete):
        for k in complete:
            complete[k][CORRUPTIONS] = float(np.mean(corruptions[k]))
    return complete


def within_models(table: Table, score: Column, target: Column, groups: list[tuple], label,
                  seed: int) -> list[SplitHalf]:
    """Per configuration: upper minus lower half by `score` of the per-sample robust outcomes."""
    out = []
    for group in groups:
        by_seed: dict[int, RunColumn] = {r.seed: r for r in table.runs[group].get(target.key, [])}
        pairs = []
        for run in table.runs[group].get(score.key, []):
            robust = by_seed.get(run.seed)
            if run.vector is None or robust is None or robust.vector is None:
                continue
            shared = run.vector.index.intersection(robust.vector.index)
            pairs.append((run.vector.loc[shared].to_numpy(), robust.vector.loc[shared].to_numpy()))
        if pairs:
            difference, low, high = split_half_difference(pairs, seed=seed)
            out.append(SplitHalf(label(group), difference, low, high, len(pairs), int(np.mean([len(p) for p, _ in
                                                                                                 pairs]))))
    return out


def verdict(relation: Relation) -> str:
    """One plain sentence: does the agreement of the best explainer predict background robustness
    here? (Judged on its Bonferroni-adjusted intervals.)"""
    best = relation.best
    (low, high), (partial_low, _) = relation.adjusted
    if best is None or not np.isfinite(low):
        return "Not measurable here: the intervals could not be computed."
    what = f"{best.explainer}'s {relation.metric.replace('_', ' ')} and {relation.target}"
    n = (f"over {relation.configurations} configurations ({relation.models} trained models; intervals adjusted for "
         f"choosing the best of {len(relation.ranking)} explainers)")
    if low > 0 and np.isfinite(partial_low) and partial_low > 0:
        return f"It holds here: {what} rise together {n}, beyond what clean accuracy explains."
    if low > 0:
        return (f"Only partly: {what} rise together {n}, but not beyond what clean accuracy explains (the partial "
                "correlation's interval includes 0).")
    if high < 0:
        return f"The opposite here: {what} move in opposite directions {n}."
    return (f"Not shown here: no explainer's {relation.metric.replace('_', ' ')} is shown to correlate with "
            f"{relation.target} {n}; even the best, {best.explainer}, has an interval that includes 0.")
