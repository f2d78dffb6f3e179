"""Which number a board ranks its entries by: the dataset's declared one, or its worst case over
every attack where the runs have one (docs/RESULTS.md: what each board ranks by)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from benchmark.dataset import Ranking
from benchmark.results.aggregate import RunColumn, Table, run_column
from benchmark.results.columns import Column
from benchmark.results.context import declaration_of
from benchmark.results.store import WORST_CASE
from benchmark_leaderboard.notes import RANK


def ranking_column(rows: pd.DataFrame, ranking: Ranking | None, table: Table,
                   load) -> tuple[Column, dict[tuple, list[RunColumn]]]:
    """The column entries are ranked by: where the runs have a `worst_case` row at the dataset's
    declared robust setting (every attack and the noise baseline at that region and eps), that;
    else the declared rows averaged per run (the existing column when they are exactly one); else
    the first robust column that is not full-image, else clean test accuracy."""
    if ranking is not None and ranking.metric == "robust_accuracy" and ranking.attack != WORST_CASE:
        worst = replace(ranking, attack=WORST_CASE, label=f"worst case over attacks ({ranking.label or 'robust'})")
        found = declared_column(rows, worst, table, load)
        if found is not None:
            return found
    found = declared_column(rows, ranking, table, load) if ranking is not None else None
    if found is not None:
        return found
    candidates = sorted(table.columns.values(), key=lambda c: c.order)
    column = next((c for c in candidates if c.kind == "robust" and c.region != "full"), None) or next(
        (c for c in candidates if c.kind == "robust"), None) or next(
        (c for c in candidates if c.key == "clean test"), None) or candidates[0]
    return column, {g: cols[column.key] for g, cols in table.runs.items() if column.key in cols}


def declared_column(rows: pd.DataFrame, ranking: Ranking, table: Table,
                    load) -> tuple[Column, dict[tuple, list[RunColumn]]] | None:
    """The rows a ranking declares, as a column: the existing one when it is exactly one
    (attack, region, eps), else its matching rows averaged per run; None when no row matches."""
    exact = [c for c in table.columns.values() if ranking.eps is not None
             and (c.metric, c.attack, c.region) == (ranking.metric, ranking.attack, ranking.region)
             and c.eps is not None and abs(c.eps - ranking.eps) < 1e-9]
    if exact:
        key = exact[0].key
        return exact[0], {g: cols[key] for g, cols in table.runs.items() if key in cols}
    matched = rows[rows.apply(ranking.matches, axis=1)] if len(rows) else rows
    runs: dict[tuple, list[RunColumn]] = {}
    for group, part in matched.groupby(["dataset", "profile", "method", "config_key"], sort=False):
        runs[group] = [run_column(r.to_dict("records"), load) for _, r in part.groupby("run_key", sort=False)]
    if not runs:
        return None
    first = matched.iloc[0]
    column = Column(f"{RANK} {ranking.label or ranking.metric}", "robust", ranking.metric,
                    f"ranked by {ranking.label or ranking.metric}", attack=ranking.attack,
                    region=ranking.region, eps=ranking.eps if ranking.eps is not None else first["eps"],
                    declared=declaration_of(first.to_dict(), ranking.metric))
    return column, runs
