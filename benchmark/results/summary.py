"""Summary tables of the results store, one per (dataset, profile): every number with its 95 %
interval, then each configuration's paired difference to a reference method (benchmark/results/aggregate.py)."""

from __future__ import annotations

import math

import pandas as pd
from rich.table import Table
from rich.text import Text

from benchmark.results.aggregate import Cell, paired, tabulate
from benchmark.results.columns import Column
from benchmark.results.context import newest_context
from benchmark.results.labels import configuration_labels, reference_group
from benchmark.results.store import reported_rows
from benchmark.stats.intervals import ALPHA, PairedDifference, holm_adjusted

SHOWN = ("clean", "robust", "corruption", "derived")
SHOWN_ATTRIBUTION = ("relevance_mass_accuracy", "object_area_fraction")
INTERVAL_NOTE = ("; 95 % bootstrap intervals over configurations (unadjusted; from 8 configurations on) and "
                 "permutation p-values (exact below 8 configurations), Holm-adjusted over this table's rho and "
                 "partial rho; * = adjusted p < 0.05")


def number(value: float, column: Column) -> str:
    """A value in the column's unit: percent for fractions."""
    if value is None or math.isnan(value):
        return "—"
    return f"{100 * value:.1f}" if column.declaration.percent() else f"{value:.3g}"


def cell_text(cell: Cell | None, column: Column) -> str:
    """`mean [low, high]`, the interval over seeds or samples (docs/RESULTS.md)."""
    if cell is None:
        return "—"
    text = number(cell.mean, column)
    if cell.has_interval:
        text += f" [{number(cell.low, column)}, {number(cell.high, column)}]"
    return text + (" ⚠" if cell.flags else "")


def difference_text(d: PairedDifference | None, column: Column) -> str:
    """`+2.3 [-1.0, 5.6]`, with `*` when significant (after the adjustment, where one was made)."""
    if d is None or math.isnan(d.difference):
        return "—"
    scale = 100 if column.declaration.percent() else 1
    text = f"{scale * d.difference:+.1f}" if scale == 100 else f"{d.difference:+.3g}"
    if not math.isnan(d.low):
        text += f" [{scale * d.low:+.1f}, {scale * d.high:+.1f}]" if scale == 100 else f" [{d.low:+.3g}, {d.high:+.3g}]"
    return text + (" *" if d.significant else "")


def shown(column: Column) -> bool:
    return column.kind in SHOWN or column.metric in SHOWN_ATTRIBUTION


def run_tables(frame: pd.DataFrame, reference: str = "vanilla") -> list[Table]:
    """Rich tables: a row per measurement, a column per configuration; then the paired difference
    of every other configuration to the `reference` method's (when it is there)."""
    frame = reported_rows(frame)
    if frame.empty:
        return []
    table = tabulate(frame)
    tables = []
    for (dataset, profile), part in frame.groupby(["dataset", "profile"], sort=True):
        groups = [g for g in table.groups() if g[:2] == (dataset, profile)]
        names = configuration_labels(part, groups)
        columns = sorted((c for key, c in table.columns.items() if shown(c) and any(
            key in table.runs[g] for g in groups)), key=lambda c: c.order)
        main = Table(title=Text(f"{dataset} · {profile} profile · percent, mean [95 % interval]"))
        main.add_column("measurement", style="bold")
        for g in groups:
            main.add_column(Text(names[g]), justify="right")
        main.add_row("training seeds", *[str(len({r.seed for runs in table.runs[g].values() for r in runs}))
                                         for g in groups])
        for column in columns:
            main.add_row(Text(column.key), *[Text(cell_text(table.cell(g, column.key), column)) for g in groups])
        tables.append(main)
        found = reference_group(groups, names, reference)
        ref = [found] if found is not None else []
        others = [g for g in groups if g != found]
        if ref and others:
            differences = {(g, column.key): paired(table.runs[g][column.key], table.runs[ref[0]][column.key])
                           for column in columns for g in others
                           if column.key in table.runs[ref[0]] and column.key in table.runs[g]}
            shown_ones = [k for k, d in differences.items() if d is not None]
            differences.update(zip(shown_ones, holm_adjusted([differences[k] for k in shown_ones])))  # type: ignore
            diff = Table(title=Text(f"{dataset} · {profile} · difference to {names[ref[0]]} on the same samples "
                                    f"(paired, unadjusted 95 % interval; * = significant after Holm's adjustment "
                                    f"over these {len(shown_ones)} comparisons)"))
            diff.add_column("measurement", style="bold")
            for g in others:
                diff.add_column(Text(names[g]), justify="right")
            for column in columns:
                diff.add_row(Text(column.key), *[Text(difference_text(differences.get((g, column.key)), column))
                                                 for g in others])
            tables.append(diff)
    return tables


def relation_tables(frame: pd.DataFrame) -> list[Table | Text]:
    """Per dataset and profile: does attribution agreement predict background robustness across
    the models (benchmark/results/relation.py)? The verdict, the explainers ranked, the within-model halves."""
    from benchmark.results.relation import relation_of

    frame = reported_rows(frame)
    out: list[Table | Text] = []
    for (dataset, profile), part in frame.groupby(["dataset", "profile"], sort=True):
        table = tabulate(part)
        ranking = newest_context(part).ranking
        target = next((c for c in table.columns.values() if ranking is not None and ranking.eps is not None
                       and (c.metric, c.attack, c.region) == (ranking.metric, ranking.attack, ranking.region)
                       and c.eps is not None and abs(c.eps - ranking.eps) < 1e-9), None)
        names = configuration_labels(part, table.groups())
        relation = relation_of(table, target, label=lambda g: names[g])
        out.append(Text(f"{dataset} · {profile}: {relation.reason or relation.verdict}"))
        if relation.reason:
            continue
        ranked = Table(title=Text(f"Spearman's rho over {relation.configurations} configurations (means of "
                                  f"their seeds){INTERVAL_NOTE}"))
        for name in ("explainer", f"rho({relation.metric}, {relation.target})", "partial rho given clean test"):
            ranked.add_column(Text(name))
        for c in relation.ranking:
            ranked.add_row(Text(c.explainer), rho_text(c.rho, c.low, c.high, p_adjusted=c.p_adjusted),
                           rho_text(c.partial, c.partial_low, c.partial_high, p_adjusted=c.p_partial_adjusted))
        out.append(ranked)
        if relation.within:
            within = Table(title=Text(f"within each model: robust accuracy of the upper minus the lower half by "
                                      f"{relation.best.explainer if relation.best else ''} relevance mass, points"))
            for name in ("configuration", "difference", "runs", "samples per run"):
                within.add_column(Text(name))
            for w in relation.within:
                within.add_row(Text(w.label), rho_text(w.difference, w.low, w.high, 100), str(w.runs), str(w.samples))
            out.append(within)
    return out


def rho_text(value: float, low: float, high: float, scale: float = 1.0, p_adjusted: float | None = None) -> str:
    """A correlation (or, with `scale` 100, a difference in points) with its interval where there
    is one and its adjusted p-value where given; * when the adjusted p is below 5 % (without one:
    when the interval excludes 0); — when undefined."""
    if not math.isfinite(value):
        return "—"
    digits = 2 if scale == 1 else 1
    text = f"{scale * value:+.{digits}f}"
    bounded = math.isfinite(low) and math.isfinite(high)
    if bounded:
        text += f" [{scale * low:+.{digits}f}, {scale * high:+.{digits}f}]"
    if p_adjusted is not None and math.isfinite(p_adjusted):
        return text + f" (adj. p {p_adjusted:.2g})" + (" *" if p_adjusted < ALPHA else "")
    return text + (" *" if bounded and (low > 0 or high < 0) else "")
