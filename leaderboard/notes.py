"""The sentences a board prints about itself: how it ranks, what the ranking rests on, and what
it can and cannot say (a smoke test, a changed schedule, no significant difference)."""

from __future__ import annotations

import json
from typing import Sequence

import pandas as pd

from benchmark.results.aggregate import RunColumn, Table
from benchmark.results.columns import Column
from benchmark.results.context import context_of
from benchmark.results.store import WORST_CASE

RANK = "ranked by"  # the prefix of the ranking column's label


def rule(column: Column, reference: str, comparisons: int = 0) -> str:
    direction = {True: "higher is better", False: "lower is better", None: "no direction"}[
        column.declaration.higher_is_better]
    worst = (" (per sample the worst case over every attack and the noise baseline run at that region, eps and "
             "attack seed: robust only if it survives all of them; docs/ATTACKS.md)") if column.attack == WORST_CASE \
        else ""
    return (f"Ranked by {column.key.removeprefix(RANK + ' ')}{worst} ({direction}). Each number is the mean over "
            "training seeds with its 95 % interval: over seeds and the test samples they share when there are "
            "several seeds (a crossed bootstrap, widened to the seeds' Student-t interval), else over samples "
            "(Wilson for accuracies, bootstrap for means); attack seeds are averaged within a run. Intervals are "
            "not clipped: a bound past 0 or 100 comes from the t-interval of a few seeds. Configurations whose "
            "interval overlaps the leader's share its rank (=). Differences are paired to "
            f"{reference} on the same samples and seeds (the same crossed interval; exact McNemar p for one seed "
            "of 0/1 outcomes); their intervals are unadjusted, and * marks a difference significant at 5 % after "
            f"Holm's adjustment over the {comparisons} comparisons this board shows.")


def support(table: Table, rank_runs: dict[tuple, list[RunColumn]]) -> str:
    seeds = sorted({len({r.seed for runs in cols.values() for r in runs}) for cols in table.runs.values()})
    ranking = [r for runs in rank_runs.values() for r in runs]
    attack_seeds = sorted({r.attack_seeds for r in ranking}) or [0]
    samples = sorted({r.samples for r in ranking}) or [0]
    span = lambda v: str(v[0]) if v[0] == v[-1] else f"{v[0]}-{v[-1]}"  # noqa: E731
    return (f"{span(seeds)} training seed(s) per configuration; the ranking number rests on {span(attack_seeds)} "
            f"attack seed(s) (or averaged rows) and {span(samples)} samples per run.")


def schedule_changes(rows: pd.DataFrame) -> list[str]:
    """The training settings (`train.KEY=VALUE`) in which these runs differ from their profile's
    defaults as their files recorded them, e.g. a ten-epoch study run under `quick`; methods whose
    defaults were not known when they ran (an external model) are skipped."""
    changes: dict[str, None] = {}
    for _, sub in rows.groupby(["method", "dataset"], sort=True):
        defaults = context_of(sub.iloc[0].to_dict()).defaults
        default = {k.removeprefix("train."): json.loads(v) for k, v in defaults.items() if k.startswith("train.")}
        for text in sub["config"].dropna().unique():
            train = json.loads(text).get("train", {})
            for name, value in train.items():
                if name in default and value != default[name]:
                    changes[f"train.{name}={json.dumps(value)}"] = None
    return list(changes)


def caution(profile: str, separated: bool, entries: int, changes: Sequence[str] = ()) -> str:
    """What the board can support: the quick profile is a smoke test unless its intervals separate
    or its runs changed the training schedule (then the board says which settings it reflects)."""
    if profile == "quick" and changes:
        return (f"Runs of the quick profile with its training changed ({', '.join(changes)}): the numbers hold for "
                "that schedule; read the intervals" + ("." if separated else
                                                       "; no difference on the ranking number is significant."))
    if profile == "quick":
        return ("The quick profile is a smoke test of the pipeline (two epochs, a few hundred samples), not a method "
                "comparison" + (": here some differences to the reference are significant on the ranking number, "
                                "but they hold for this short schedule only." if separated else
                                "; no difference on the ranking number is significant."))
    return "" if separated or entries < 2 else "No difference on the ranking number is significant."
