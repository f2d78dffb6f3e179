"""Summary tables of the results store: one table per (dataset, profile), mean ± std over seeds."""

from __future__ import annotations

import pandas as pd
from rich.table import Table
from rich.text import Text

from .store import reported_rows


def eps_label(eps: float) -> str:
    """2/255 rather than 0.007843 when eps is a whole number of grey levels below 1."""
    levels = eps * 255
    if 0 < eps < 1 and abs(levels - round(levels)) < 1e-6:
        return f"{round(levels)}/255"
    return f"{eps:.4g}"


def column_label(row: pd.Series) -> str:
    if row["suite"] == "accuracy":
        return f"clean {row['eval_set']}"
    if row["suite"] == "robustness" and row["metric"] == "clean_accuracy":
        return f"clean {row['eval_set']} (attacked samples)"
    if row["suite"] == "robustness":
        norm = "" if row["norm"] == "linf" else f" {row['norm']}"
        return f"{row['attack']}{norm} {row['region']} {eps_label(row['eps'])}"
    if row["suite"] == "corruptions":
        return f"{row['attack']} {row['region']} s{int(row['severity'])}"
    if row["suite"] == "attribution":
        if row["metric"] == "object_area_fraction":
            return "object area (chance mass)"
        return f"mass on object: {row['explainer']}"
    return str(row["metric"])


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Long rows -> mean, std, count and seeds per (method, dataset, profile, column)."""
    columns = ["method", "dataset", "profile", "column", "mean", "std", "count", "seeds", "order"]
    frame = reported_rows(frame)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    suite, metric = frame["suite"], frame["metric"]
    keep = (
        ((suite == "accuracy") & (metric == "accuracy"))
        | ((suite == "robustness") & (metric == "robust_accuracy") & (frame["attack"] != "noise"))
        | ((suite == "robustness") & (metric == "clean_accuracy"))
        | ((suite == "corruptions") & (metric == "corrupted_accuracy"))
        | (suite == "derived")
        | ((suite == "attribution") & metric.isin(["relevance_mass_accuracy", "object_area_fraction"])
           & ~frame["extra"].str.contains('"comparison": true', regex=False))
    )
    part = frame[keep].copy()
    if part.empty:
        return pd.DataFrame(columns=columns)
    part["column"] = part.apply(column_label, axis=1)
    part["order"] = part["suite"].map({"accuracy": 0, "robustness": 1, "corruptions": 2, "derived": 3,
                                       "attribution": 4}).fillna(5)
    grouped = part.groupby(["method", "dataset", "profile", "column"], sort=False)
    out = grouped["value"].agg(["mean", "std", "count"]).reset_index()
    out["seeds"] = grouped["seed"].nunique().values
    out["order"] = grouped["order"].first().values
    return out[columns]


def run_tables(frame: pd.DataFrame) -> list[Table]:
    """Rich tables in percent, one row per measurement and one column per method (methods are few,
    measurements many); '± std' where several seeds or attack seeds were measured."""
    summary = summarize(frame)
    tables = []
    for (dataset, profile), part in summary.groupby(["dataset", "profile"], sort=True):
        table = Table(title=Text(f"{dataset} · {profile} profile · accuracy and relevance mass in %"))
        table.add_column("measurement", style="bold")
        methods = sorted(part["method"].unique())
        for method in methods:
            table.add_column(Text(method), justify="right")
        seeds = part.groupby("method")["seeds"].max()
        table.add_row("training seeds", *[str(int(seeds[m])) for m in methods])
        cells = {(r["method"], r["column"]): _cell(r["mean"], r["std"], r["count"]) for _, r in part.iterrows()}
        for col in part.sort_values(["order", "column"])["column"].drop_duplicates():
            table.add_row(Text(col), *[Text(cells.get((m, col), "—")) for m in methods])
        tables.append(table)
    return tables


def _cell(mean: float, std: float, count: int) -> str:
    text = f"{100 * mean:.1f}"
    return f"{text} ± {100 * std:.1f}" if count > 1 and pd.notna(std) else text
