"""The leaderboard's boards: pure functions from result rows (and their per-sample records) to
ranked tables with intervals, paired comparisons, curves and provenance. Nothing here renders.

A board is one (dataset, profile); an entry one configuration (a config key: the resolved config
without its seed), its numbers the mean over its training seeds with a 95 % interval
(benchmark/results/aggregate.py). Entries are ranked by the dataset's declared ranking metric; entries
whose interval overlaps the leader's share its rank. Each entry carries its paired difference to
the reference method on the same samples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.results.aggregate import Cell, Table, cell_of, paired, records_loader, tabulate
from benchmark.results.columns import Column
from benchmark.results.context import newest_context
from benchmark.results.labels import configuration_labels, reference_group
from benchmark.results.layout import RunFiles
from benchmark.results.relation import Relation, relation_of
from benchmark.results.store import FAILED, reported_rows
from benchmark.stats.intervals import PairedDifference, holm_adjusted
from benchmark_leaderboard.notes import caution, rule, schedule_changes, support
from benchmark_leaderboard.ranking import ranking_column

MAIN_KINDS = ("clean", "robust", "corruption", "derived")
HEATMAP_EXPLAINERS = ("saliency", "integrated_gradients", "grad_cam", "pixel_mask")


@dataclass
class Entry:
    method: str
    config_key: str
    seeds: list[int]
    cells: dict[str, Cell]
    comparisons: dict[str, PairedDifference]
    provenance: dict[str, str]
    rank: int = 0
    tied: bool = False
    heatmaps: dict[str, bytes] = field(default_factory=dict)
    selected: str = ""  # how a sweep selected this configuration ("" when none did)
    external: str = ""  # where a model trained elsewhere came from (`benchmark evaluate`; "" for methods)
    point: str = ""  # the sweep grid point of this configuration, e.g. "lambda_s=0 rho_x=0" ("" when none)
    failures: list[str] = field(default_factory=list)  # "suite: reason"
    diverged: bool = False  # a training of this configuration diverged: shown, never ranked (rank 0)


@dataclass
class Board:
    dataset: str
    profile: str
    reference: str
    columns: list[Column]  # the ranking column first, then the main columns
    entries: list[Entry]  # ranked
    rule: str
    support: str  # training seeds, attack seeds and samples behind the numbers
    caution: str  # what the board can and cannot say
    curves: dict[str, dict[str, list[tuple[float, Cell]]]]  # "attack · region" -> method -> [(eps, cell)]
    attribution: dict[str, dict[str, dict[str, Cell]]]  # metric label -> entry label -> explainer -> cell
    explainers: list[str] = field(default_factory=list)
    relation: Relation | None = None  # does attribution agreement predict background robustness here?
    sanity: dict[str, tuple[Column, dict[str, dict[str, Cell]]]] = field(default_factory=dict)  # check -> rows
    insensitive: list[str] = field(default_factory=list)  # explainers flagged model_insensitive on this board


def ranked(entries: list[Entry], key: str, higher_is_better: bool | None) -> list[Entry]:
    """Best first by the ranking cell `key`; entries whose interval overlaps the current leader's
    share its rank (marked tied); an entry without the ranking number comes last."""
    sign = -1 if higher_is_better is not False else 1
    order = sorted(entries, key=lambda e: (key not in e.cells, sign * e.cells[key].mean if key in e.cells else 0,
                                           e.method))
    position = 0
    while position < len(order):
        leader = order[position]
        group = [leader] + [e for e in order[position + 1:] if key in e.cells and key in leader.cells
                            and e.cells[key].overlaps(leader.cells[key])]
        members = {id(e) for e in group}
        rest = [e for e in order[position + 1:] if id(e) not in members]
        order = order[:position] + group + rest
        for e in group:
            e.rank, e.tied = position + 1, len(group) > 1
        position += len(group)
    return order


def build_boards(frame: pd.DataFrame, reference: str = "vanilla") -> list[Board]:
    """Every board of the rows, ranked, with intervals and comparisons to `reference`."""
    frame = reported_rows(frame)
    if frame.empty:
        return []
    load = records_loader()
    chosen = selections(frame)
    boards = []
    for (dataset, profile), rows in frame.groupby(["dataset", "profile"], sort=True):
        table = tabulate(rows, load)
        groups = table.groups()
        context = newest_context(rows)  # what the files say: ranking, metric labels, defaults
        rank_column, rank_runs = ranking_column(rows, context.ranking, table, load)
        columns = [c for c in sorted(table.columns.values(), key=lambda c: c.order) if c.kind in MAIN_KINDS]
        names = configuration_labels(rows, groups)
        ref_group = reference_group(groups, names, reference)
        entries = []
        for group in groups:
            runs = table.runs[group]
            cells = {c.key: table.cell(group, c.key) for c in columns if c.key in runs}
            comparisons = {}
            if ref_group is not None and group != ref_group:
                for c in columns:
                    if c.key in runs and c.key in table.runs[ref_group]:
                        comparisons[c.key] = paired(runs[c.key], table.runs[ref_group][c.key])
                if group in rank_runs and ref_group in rank_runs:
                    comparisons[rank_column.key] = paired(rank_runs[group], rank_runs[ref_group])
            if group in rank_runs:
                cells[rank_column.key] = cell_of(rank_runs[group], rank_column)
            sub = rows[rows["config_key"] == group[3]]
            entries.append(Entry(group[2], group[3], sorted({int(s) for s in sub["seed"].dropna()}),
                                 {k: v for k, v in cells.items() if v is not None},
                                 {k: v for k, v in comparisons.items() if v is not None}, provenance(sub),
                                 heatmaps=heatmaps(sub), selected=chosen.get(group[3], ""), failures=failures(sub),
                                 external=tag(sub, "external"), diverged=diverged(sub),
                                 point=tag(sub, "sweep_point") or names[group][len(group[2]):].strip()))
        family = adjust_comparisons(entries)
        entries = ranked([e for e in entries if not e.diverged], rank_column.key,
                         rank_column.declaration.higher_is_better) + [e for e in entries if e.diverged]
        columns = [rank_column, *(c for c in columns if c.key != rank_column.key)]
        shown_reference = names[ref_group] if ref_group else reference
        board = Board(dataset, profile, shown_reference, columns, entries, rule(rank_column, reference, family),
                      support(table, rank_runs),
                      caution(profile, separated(entries, rank_column.key), len(entries),
                              schedule_changes(rows)),
                      curves(table, groups, names), *attribution_tables(table, groups, names))
        board.sanity = sanity_tables(table, groups, names, context.declaration("relevance_mass_accuracy").label)
        board.insensitive = insensitive_explainers(board.sanity)
        board.relation = relation_of(table, rank_column, label=lambda g: names[g], ineligible=set(board.insensitive))
        boards.append(board)
    return boards


def separated(entries: list[Entry], key: str) -> bool:
    """Whether some entry differs significantly from the reference on the ranking number."""
    return any(e.comparisons.get(key) is not None and e.comparisons[key].significant for e in entries)


def adjust_comparisons(entries: list[Entry]) -> int:
    """Holm's adjustment over every comparison the board shows (in place); their number."""
    keys = [(e, key) for e in entries for key in e.comparisons]
    for (e, key), d in zip(keys, holm_adjusted([e.comparisons[key] for e, key in keys])):
        e.comparisons[key] = d
    return len(keys)


Curves = dict[str, dict[str, list[tuple[float, Cell]]]]  # attack · region -> configuration -> (eps, cell)


def curves(table: Table, groups: list[tuple], names: dict[tuple, str]) -> Curves:
    out: Curves = {}
    for key, column in table.columns.items():
        if column.kind != "robust" or column.eps is None:
            continue
        for group in groups:
            cell = table.cell(group, key)
            if cell is not None:
                line = out.setdefault(f"{column.attack} · {column.region}", {}).setdefault(names[group], [])
                line.append((column.eps, cell))
    for lines in out.values():
        for points in lines.values():
            points.sort(key=lambda p: p[0])
    return out


def attribution_tables(table: Table, groups: list[tuple], names: dict[tuple, str]) -> tuple[dict, list[str]]:
    """Per agreement metric (relevance mass first, then the rest in the order the files hold them):
    entry -> explainer -> cell."""
    order = ["relevance_mass_accuracy", "pixel_auroc", "pointing_game"]
    declared = {c.metric: c.declaration for c in table.columns.values() if c.kind == "attribution"}
    metrics = sorted(declared.values(), key=lambda m: (order.index(m.name) if m.name in order else len(order)))
    labels = {m.name: m.label for m in metrics}
    out: dict[str, dict[str, dict[str, Cell]]] = {}
    explainers: set[str] = set()
    for key, column in table.columns.items():
        if column.kind != "attribution" or column.explainer is None:
            continue
        label = labels.get(column.metric, column.declaration.label)
        for group in groups:
            cell = table.cell(group, key)
            if cell is not None:
                out.setdefault(label, {}).setdefault(names[group], {})[column.explainer] = cell
                explainers.add(column.explainer)
    ranked_labels = [labels[m.name] for m in metrics if labels[m.name] in out]
    return {label: out[label] for label in [*ranked_labels, *(k for k in out if k not in ranked_labels)]}, \
        sorted(explainers)


def sanity_tables(table: Table, groups: list[tuple], names: dict[tuple, str], main_label: str
                  ) -> dict[str, tuple[Column, dict[str, dict[str, Cell]]]]:
    """Per randomisation check (benchmark/suites/sanity.py): its column and entry -> explainer -> cell;
    the two similarities first, then the controls of the main agreement metric (relevance mass;
    the other metrics' controls are in the Parquet files)."""
    order = ["model_randomisation_similarity", "random_logit_similarity", "agreement_above_random_model",
             "randomised_model_agreement", "random_map_agreement"]
    main = f"({main_label})"
    out: dict[str, tuple[Column, dict[str, dict[str, Cell]]]] = {}
    for key, column in sorted(table.columns.items(), key=lambda kv: (order.index(kv[1].metric)
                                                                     if kv[1].metric in order else len(order), kv[0])):
        if column.kind != "sanity" or column.explainer is None or ("(" in key and main not in key):
            continue
        title = key.rsplit(": ", 1)[0]
        for group in groups:
            cell = table.cell(group, key)
            if cell is not None:
                out.setdefault(title, (column, {}))[1].setdefault(names[group], {})[column.explainer] = cell
    return out


def insensitive_explainers(sanity: dict[str, tuple[Column, dict[str, dict[str, Cell]]]]) -> list[str]:
    """Explainers whose maps survived full randomisation in some configuration (flag
    model_insensitive): their agreement is shown, never trusted to say what the model does."""
    return sorted({explainer for _, rows in sanity.values() for cells in rows.values()
                   for explainer, cell in cells.items() if "model_insensitive" in cell.flags})


def selections(frame: pd.DataFrame) -> dict[str, str]:
    """config_key of each configuration a sweep selected -> a note on how (from 'selection' rows)."""
    notes = {}
    for _, row in frame[frame["suite"] == "selection"].iterrows():
        extra = json.loads(row["extra"] or "{}")
        if extra.get("selected") and extra.get("final_config_key"):
            rule = ("worst-group val accuracy" if row["metric"] == "worst_group_accuracy"
                    else f"robust val accuracy under full-image PGD eps {row['eps']:.4g}")
            notes[extra["final_config_key"]] = (f"selected by a sweep among {extra.get('candidates', '?')} grid "
                                                f"points: highest mean {rule} ({100 * row['value']:.1f} %)")
    return notes


def tag(rows: pd.DataFrame, key: str) -> str:
    """The value of an `extra` tag on an entry's rows: `external` (the source of a model evaluated
    by `benchmark evaluate`), `sweep_point` (the grid point of a sweep's run)."""
    values = {json.loads(e or "{}").get(key) for e in rows["extra"]} - {None}
    return ", ".join(sorted(map(str, values)))


def diverged(rows: pd.DataFrame) -> bool:
    """Whether any run of the entry carries the `diverged` flag (its final training loss is over
    ten times its first)."""
    return bool(rows["flags"].fillna("").str.split(",").apply(lambda flags: "diverged" in flags).any())


def failures(rows: pd.DataFrame) -> list[str]:
    failed = rows[rows["metric"] == FAILED]
    return [f"{r['suite']}: {json.loads(r['extra'] or '{}').get('error', '')}" for _, r in failed.iterrows()]


def provenance(rows: pd.DataFrame) -> dict[str, str]:
    latest = rows.sort_values("created").iloc[-1]
    return {
        "commit": ", ".join(sorted(set(rows["git_commit"].astype(str)))),
        "trained by": ", ".join(sorted(set(rows["train_commit"].dropna().astype(str)))) or "unknown (schema 1)",
        "device": ", ".join(sorted(set(rows["device"].astype(str)))),
        "created": ", ".join(sorted({str(c)[:19] for c in rows["created"]})),
        "versions": str(latest["versions"]),
        "files": ", ".join(sorted({Path(f).name for f in rows["source_file"]})),
        "config": json.dumps(json.loads(latest["config"]), indent=1, sort_keys=True),
    }


def heatmaps(rows: pd.DataFrame) -> dict[str, bytes]:
    """Example attribution maps of the entry's lowest seed, from its run's artefact folder."""
    found: dict[str, bytes] = {}
    for source in sorted(set(rows.sort_values("seed")["source_file"])):
        folder = RunFiles.of_results(Path(source)).artifacts / "attribution"
        for name in HEATMAP_EXPLAINERS:
            png = folder / f"{name}.png"
            if name not in found and png.is_file():
                found[name] = png.read_bytes()
        if found:
            break
    return found
