"""Does looking at the object predict robustness to the background? The relation, per board.

Across models: every configuration of a dataset and profile (a method, a grid point, an external
model) is one point, its numbers averaged over its training seeds (seeds of one configuration
share its effect, so counting them as separate models would overstate the evidence); for each
explainer's agreement metric and each background robustness number, Spearman's rho over the
configurations with a bootstrap interval over configurations (from EXACT_BELOW configurations on; a
bootstrap over fewer is too coarse to show) and a permutation p-value, and the partial rho given
clean accuracy, so that a relation which only says "better models are better at everything" shows
as such. Every p-value is Holm-adjusted within the table that shows it: the explainers' ranking
(rho and partial rho of each) is one family, every agreement metric against every robustness
number another. Explainers are ranked by how well their relevance mass predicts the board's
main background robustness number; the verdict reads the ranking's adjusted p-values.
Within a model: from the per-sample records, whether the samples whose relevance mass lies more on
the object are more often robust (upper minus lower half by mass, with a bootstrap interval).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

import numpy as np

from benchmark.results.aggregate import Cell, RunColumn, Table, cell_of
from benchmark.results.columns import Column
from benchmark.stats.correlation import EXACT_BELOW, ModelBootstrap, split_half_difference
from benchmark.stats.intervals import ALPHA, holm

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
    p: float = np.nan  # permutation p-value of rho = 0
    p_partial: float = np.nan
    p_adjusted: float = np.nan  # Holm-adjusted within the table that shows this correlation
    p_partial_adjusted: float = np.nan


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
    ineligible: set[str] = field(default_factory=set)  # explainers shown but never the verdict's (model_insensitive)

    @property
    def best(self) -> Correlation | None:
        """The best-ranked explainer the verdict may name (model-insensitive ones are not eligible)."""
        return next((c for c in self.ranking if c.explainer not in self.ineligible), None)


def relation_of(table: Table, target: Column | None, label=lambda group: str(group[2]), seed: int = 0,
                ineligible: set[str] | None = None) -> Relation:
    """The relation of a board's table; `target` is its main robustness column (else the first
    background one), `label` names a configuration; `ineligible` explainers (those that failed a
    randomisation check) are shown but never named by the verdict."""
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
    correlations = [correlation(boot, c, t) for c in agreement for t in targets]
    metric = "relevance_mass_accuracy" if any(c.metric == "relevance_mass_accuracy" for c in agreement) \
        else agreement[0].metric
    ranking = sorted((c for c in correlations if c.metric == metric and c.target == target.key),
                     key=lambda c: -c.rho if np.isfinite(c.rho) else np.inf)
    relation = Relation(target.key, metric, holm_family(correlations), holm_family(ranking), models=len(models),
                        configurations=len(configurations), ineligible=set(ineligible or ()))
    best = relation.best
    if best is not None:
        column = next(c for c in agreement if c.metric == metric and c.explainer == best.explainer)
        relation.points = [Point(label(g), cell_of(table.runs[g][column.key], column),
                                 cell_of(table.runs[g][target.key], target)) for g in configurations]
        relation.within = within_models(table, column, target, configurations, label, seed)
    relation.verdict = verdict(relation)
    return relation


def correlation(boot: ModelBootstrap, column: Column, target: str) -> Correlation:
    """rho and partial rho of an agreement column with a robustness number, with permutation
    p-values; bootstrap intervals only from EXACT_BELOW configurations on."""
    rho, partial = boot.rho(column.key, target), boot.partial(column.key, target, CLEAN)
    if boot.models < EXACT_BELOW:
        rho, partial = (rho[0], np.nan, np.nan), (partial[0], np.nan, np.nan)
    return Correlation(column.explainer or "", column.metric, target, *rho, *partial, models=boot.models,
                       p=boot.permutation_p(column.key, target),
                       p_partial=boot.permutation_p(column.key, target, CLEAN))


def holm_family(correlations: list[Correlation]) -> list[Correlation]:
    """Copies of the correlations with their rho and partial-rho p-values Holm-adjusted as one family."""
    adjusted = holm([c.p for c in correlations] + [c.p_partial for c in correlations])
    k = len(correlations)
    return [replace(c, p_adjusted=adjusted[i], p_partial_adjusted=adjusted[k + i]) for i, c in enumerate(correlations)]


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
    here? (Judged on its p-values adjusted for the ranking of every explainer.)"""
    best = relation.best
    if best is None and relation.ranking:
        return ("Not judged here: every explainer's maps survive the model's randomisation (model_insensitive), "
                "so none can say what the model looks at.")
    if best is None or not np.isfinite(best.p_adjusted):
        return "Not measurable here: the correlations could not be computed."
    what = f"{best.explainer}'s {relation.metric.replace('_', ' ')} and {relation.target}"
    n = (f"over {relation.configurations} configurations ({relation.models} trained models; permutation p-values "
         f"Holm-adjusted over the {len(relation.ranking)} explainers' rho and partial rho)")
    if relation.ineligible & {c.explainer for c in relation.ranking}:
        n += (f"; {', '.join(sorted(relation.ineligible))} left out of the verdict: their maps survive the model's "
              "randomisation")
    shown = best.p_adjusted < ALPHA
    if shown and best.rho > 0 and best.p_partial_adjusted < ALPHA and best.partial > 0:
        return f"It holds here: {what} rise together {n}, beyond what clean accuracy explains."
    if shown and best.rho > 0:
        return (f"Only partly: {what} rise together {n}, but not beyond what clean accuracy explains (the partial "
                "correlation is not significant).")
    if shown and best.rho < 0:
        return f"The opposite here: {what} move in opposite directions {n}."
    return (f"Not shown here: no explainer's {relation.metric.replace('_', ' ')} is shown to correlate with "
            f"{relation.target} {n}; even the best, {best.explainer}, has adjusted p = {best.p_adjusted:.2g}.")
