"""Model selection by the paper's rule: the grid point with the highest robust validation accuracy
under full-image PGD, averaged over training seeds (clean validation accuracy breaks ties, then
grid order). It reads only the candidates' result files and uses no mask information. With
`--select worst_group`, the highest worst-group validation accuracy instead (group DRO's model
selection, Sagawa et al. 2020), with the same ties.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark import provenance
from benchmark.results.context import context_json, metric_names
from benchmark.results.kept import completed_run_id
from benchmark.results.store import Measurement, read_results, write_run
from benchmark.sweep.plan import Group, point_label

RULE = "highest mean robust val accuracy under full-image L-inf PGD over training seeds; ties: clean val accuracy"
RULES = {"paper": RULE,
         "worst_group": "highest mean worst-group val accuracy over training seeds; ties: clean val accuracy"}


@dataclass
class Score:
    index: int  # grid point
    robust: float  # mean over seeds of the selecting number on val (full-image PGD, or the worst group's)
    clean: float  # mean over seeds of the clean val accuracy
    n: int  # attacked samples per seed
    config_key: str  # the candidate config without its seed


@dataclass
class Selection:
    group: Group
    scores: list[Score] = field(default_factory=list)
    chosen: int | None = None  # grid point index
    problems: list[str] = field(default_factory=list)  # candidates left out, and why

    @property
    def best(self) -> Score | None:
        return next((s for s in self.scores if s.index == self.chosen), None)


def run_score(frame: pd.DataFrame, eps: float, rule: str = "paper") -> tuple[float, float, int] | None:
    """(score, clean, n) of one candidate run's rows, or None when they lack the selection rows."""
    if rule == "worst_group":
        robust = frame[(frame["metric"] == "worst_group_accuracy") & (frame["eval_set"] == "val")]
    else:
        robust = frame[(frame["suite"] == "robustness") & (frame["metric"] == "robust_accuracy")
                       & (frame["attack"] == "pgd") & (frame["region"] == "full") & (frame["eval_set"] == "val")
                       & ((frame["eps"] - eps).abs() < 1e-9)]
    clean = frame[(frame["suite"] == "accuracy") & (frame["metric"] == "accuracy") & (frame["eval_set"] == "val")]
    if robust.empty or clean.empty:
        return None
    return float(robust["value"].mean()), float(clean["value"].mean()), int(robust["n"].iloc[0])


def select(group: Group, finished: set[str]) -> Selection:
    """Score every grid point whose candidates finished for all seeds, and choose one."""
    selection = Selection(group)
    for index, point in enumerate(group.points):
        jobs = [group.candidates[(index, seed)] for seed in group.seeds]
        missing = [j.seed for j in jobs if j.key not in finished]
        if missing:
            selection.problems.append(f"{point_label(point)}: left out, seed(s) {missing} did not finish")
            continue
        frame, bad = read_results([j.results_path for j in jobs])
        scored = [run_score(frame[frame["run_key"] == j.key], group.eps, group.rule) for j in jobs]
        runs = [r for r in scored if r is not None]
        if bad or len(runs) < len(scored):
            selection.problems.append(f"{point_label(point)}: left out, its results lack the selection rows")
            continue
        selection.scores.append(Score(index, sum(r[0] for r in runs) / len(runs), sum(r[1] for r in runs) / len(runs),
                                      runs[0][2], str(frame["config_key"].iloc[0])))
    if selection.scores:
        selection.chosen = max(selection.scores, key=lambda s: (s.robust, s.clean, -s.index)).index
    return selection


def write_selection(selection: Selection, out_dir: Path, final_config_key: str | None) -> Path:
    """The decision as result rows (suite 'selection', one per scored grid point) in its own file,
    named by the candidates' keys; `final_config_key` names the config of the final evaluation."""
    group = selection.group
    keys = sorted(job.key for job in group.candidates.values())
    scored = [s.index for s in selection.scores]
    key = hashlib.sha256(json.dumps([keys, group.eps, scored, selection.chosen]).encode()).hexdigest()[:16]
    path = Path(out_dir) / f"selection__{group.method}__{group.dataset}__{group.profile}__{key}.parquet"
    if completed_run_id(path, key):  # the same candidates led to the same decision before
        return path
    config = json.dumps({"rule": RULES[group.rule], "eps": group.eps, "seeds": list(group.seeds),
                         "points": [dict(p) for p in group.points]}, sort_keys=True)
    run = provenance.run_columns({"run_key": key, "config_key": "", "method": group.method, "dataset": group.dataset,
                                  "profile": group.profile, "seed": None, "config": config}, created=provenance.now())
    rows = []
    for score in selection.scores:
        chosen = score.index == selection.chosen
        extra = {"point": dict(group.points[score.index]), "seeds": list(group.seeds), "selected": chosen,
                 "clean_val_accuracy": score.clean, "candidates": len(group.points),
                 "config_key": score.config_key}
        if chosen and final_config_key:
            extra["final_config_key"] = final_config_key
        if group.rule == "worst_group":
            rows.append(Measurement("selection", "worst_group_accuracy", score.robust, score.n, eval_set="val",
                                    extra=extra))
        else:
            rows.append(Measurement("selection", "robust_accuracy", score.robust, score.n, eval_set="val",
                                    attack="pgd", region="full", norm="linf", eps=group.eps, extra=extra))
    return write_run(rows, run, path, context_json(group.method, group.dataset, group.profile, metric_names(rows)))
