"""Which column of a summary a result row feeds, labelled once for every reader (`benchmark
results`, the leaderboard and its exports). The meaning of a column (unit, direction, how it
aggregates) is its metric's declaration (benchmark/metrics), never parsed from the label."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from benchmark.results.context import Declaration, declaration_of, undeclared

KINDS = ("clean", "robust", "corruption", "derived", "attribution", "faithfulness", "sanity", "baseline",
         "diagnostic")


@dataclass(frozen=True)
class Column:
    """A summary column: its label (unique within a dataset and profile), kind, metric and the
    settings that identify it (for curves over eps)."""

    key: str
    kind: str
    metric: str
    note: str = ""
    attack: str | None = None
    region: str | None = None
    eps: float | None = None
    explainer: str | None = None
    declared: Declaration | None = field(default=None, compare=False, repr=False)  # from the rows' file

    @property
    def declaration(self) -> Declaration:
        return self.declared or undeclared(self.metric)

    @property
    def order(self) -> tuple[int, str]:
        return KINDS.index(self.kind), self.key


def eps_label(eps: float) -> str:
    """2/255 rather than 0.007843 when eps is a whole number of grey levels below 1."""
    levels = eps * 255
    if 0 < eps < 1 and abs(levels - round(levels)) < 1e-6:
        return f"{round(levels)}/255"
    return f"{eps:.4g}"


def column_of(row: Mapping[str, Any]) -> Column | None:
    """The column a result row feeds, or None for rows no summary shows (training, failures,
    selection, the PixelMask initialisation comparison); its metric declared as the row's file
    declares it."""
    column = suite_column(row)
    return replace(column, declared=declaration_of(row)) if column is not None else None


def suite_column(row: Mapping[str, Any]) -> Column | None:
    suite, metric = row["suite"], row["metric"]
    if metric == "failed":
        return None
    if suite == "accuracy":
        return Column(f"clean {row['eval_set']}", "clean", metric, f"clean accuracy on {row['eval_set']}") \
            if metric == "accuracy" else None
    if suite == "diagnostics":
        return Column(f"{metric} {row['eval_set']}", "diagnostic", metric, "a model view, not the model")
    if suite == "derived":
        declared = declaration_of(row, metric)
        return Column(declared.label or str(metric), "derived", metric, declared.doc)
    by_suite = {"robustness": robustness_column, "corruptions": corruption_column, "sanity": sanity_column,
                "attribution": attribution_column, "group_accuracy": group_column, "challenge": challenge_column}
    if suite in by_suite:
        return by_suite[suite](row)
    return None if suite in HIDDEN_SUITES else plugin_column(row)


HIDDEN_SUITES = ("training", "selection")  # rows no summary shows


def plugin_column(row: Mapping[str, Any]) -> Column | None:
    """A row of a suite these readers do not know (a plugin's): one column per (suite, metric,
    eval set, explainer, attack, region, eps), labelled from the metric's declaration; shown with
    the clean numbers when it is a ranked fraction, else as a diagnostic."""
    declared = declaration_of(row)
    parts = [declared.label or row["metric"], f"({row['suite']})"]
    for key in ("eval_set", "attack", "region", "explainer"):
        if isinstance(row.get(key), str) and row[key]:
            parts.append(row[key])
    if isinstance(row.get("eps"), float) and math.isfinite(row["eps"]):
        parts.append(eps_label(row["eps"]))
    kind = "clean" if declared.higher_is_better is not None and declared.unit == "fraction" else "diagnostic"
    return Column(" ".join(parts), kind, row["metric"], declared.doc)


def robustness_column(row: Mapping[str, Any]) -> Column | None:
    metric = row["metric"]
    if metric == "clean_accuracy":
        return Column(f"clean {row['eval_set']} (attacked samples)", "clean", metric,
                      "clean accuracy on the samples the attacks use")
    if metric not in ("robust_accuracy", "baseline_accuracy"):
        return None
    norm = "" if row["norm"] == "linf" else f" {row['norm']}"
    eps = row["eps"]
    label = f"{row['attack']}{norm} {row['region']} {eps_label(eps)}"
    kind = "robust" if metric == "robust_accuracy" else "baseline"
    return Column(label, kind, metric, f"{declaration_of(row).label}, {row['attack']} confined to {row['region']}, "
                  f"eps {eps:.4g} ({row['norm']})", attack=row["attack"], region=row["region"], eps=eps)


def group_column(row: Mapping[str, Any]) -> Column | None:
    """Worst-group and average group accuracy, and each group's, on the suite's split."""
    metric = row["metric"]
    declared = declaration_of(row, metric)
    extra = extra_of(row)
    suffix = f": {extra.get('group')}" if metric == "group_accuracy" else ""
    return Column(f"{declared.label} {row['eval_set']}{suffix}", "clean", metric, declared.doc)


def challenge_column(row: Mapping[str, Any]) -> Column | None:
    """The Backgrounds Challenge's accuracy, per label protocol (its eval set)."""
    declared = declaration_of(row)
    return Column(f"{declared.label} {row['eval_set']}", "clean", row["metric"], declared.doc)


def corruption_column(row: Mapping[str, Any]) -> Column | None:
    if row["metric"] in ("core_accuracy", "spurious_accuracy"):
        declared = declaration_of(row)
        return Column(declared.label, "corruption", row["metric"], declared.doc, attack=row["attack"],
                      region=row["region"])
    if row["metric"] != "corrupted_accuracy":
        return None
    return Column(f"{row['attack']} {row['region']} s{int(row['severity'])}", "corruption", row["metric"],
                  f"accuracy under {row['attack']} of severity {int(row['severity'])} in {row['region']}",
                  attack=row["attack"], region=row["region"])


def attribution_column(row: Mapping[str, Any]) -> Column | None:
    metric = row["metric"]
    declared = declaration_of(row, metric)
    if _comparison(row):
        return None
    if metric == "object_area_fraction":
        return Column(declared.label, "diagnostic", metric, "the chance level of the mass metrics")
    kind = "attribution" if declared.higher_is_better is not None and declared.unit == "fraction" else "faithfulness"
    if row.get("explainer") is None or (isinstance(row.get("explainer"), float) and math.isnan(row["explainer"])):
        return None
    return Column(f"{declared.label}: {row['explainer']}", kind, metric,
                  f"{declared.label} of {row['explainer']} maps", explainer=row["explainer"])


def sanity_column(row: Mapping[str, Any]) -> Column | None:
    """The randomisation checks (benchmark/suites/sanity.py): one column per explainer and check;
    the controls per agreement metric; the per-layer MPRT curve as diagnostics."""
    metric, explainer = row["metric"], row.get("explainer")
    if not isinstance(explainer, str):
        return None
    declared = declaration_of(row, metric)
    extra = extra_of(row)
    if metric == "mprt_similarity":
        return Column(f"{declared.label}, {extra.get('depth')} of {extra.get('layers')} re-initialised: {explainer}",
                      "diagnostic", metric, f"after re-initialising down to {extra.get('layer')}", explainer=explainer)
    agreement = extra.get("agreement")
    title = f"{declared.label} ({declaration_of(row, agreement).label})" if agreement else declared.label
    return Column(f"{title}: {explainer}", "sanity", metric, declared.doc, explainer=explainer)


def _comparison(row: Mapping[str, Any]) -> bool:
    return bool(extra_of(row).get("comparison", False))


def extra_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's `extra` JSON as a dict (empty when it has none)."""
    extra = row.get("extra")
    return json.loads(extra) if isinstance(extra, str) and extra else {}
