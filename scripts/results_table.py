"""Print docs/RESULTS.md's tables from a results folder, with today's statistics.

Usage: python scripts/results_table.py FOLDER [--reference CONFIG] COLUMN [COLUMN ...]

Each row is a configuration of the folder's board (named as the leaderboard names it), each
COLUMN (a column label as `benchmark results` prints it, e.g. "clean test", "pgd right_digit 1",
"relevance mass accuracy: saliency") a cell `mean [95 % interval]` followed by its paired
difference to the reference, starred when significant after Holm's adjustment over every
comparison the folder's leaderboard shows (columns the board does not show, e.g. diagnostics or
sanity checks, get the cell alone). The numbers are the leaderboard's own (same boards,
same intervals), so a table regenerates from the folder alone.

With --selection (no COLUMN), the sweep's model selection: each scored grid point's validation
score (mean over its seeds), clean validation accuracy, and which one was chosen.

With --per-explainer, each COLUMN is a prefix ("similarity after full randomisation") and the
table has one row per explainer and one column per configuration (cells only).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmark.results.aggregate import tabulate
from benchmark.results.store import read_results, reported_rows
from benchmark.results.summary import cell_text, difference_text
from benchmark_leaderboard.report import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("columns", nargs="*")
    parser.add_argument("--reference", default="vanilla")
    parser.add_argument("--per-explainer", action="store_true", help="COLUMNs are prefixes; rows are explainers")
    parser.add_argument("--selection", action="store_true", help="the sweep's model selection")
    args = parser.parse_args()
    if args.selection:
        return selection(args.folder)
    boards, problems, _ = build_report([args.folder], args.reference)
    for line in problems:
        print(f"skipped: {line}")
    table = tabulate(reported_rows(read_results([args.folder])[0]))  # columns the board does not show
    if args.per_explainer:
        return per_explainer(boards, table, args.columns)
    for board in boards:
        columns = {c.key: c for c in board.columns}
        extra = {k: c for k, c in table.columns.items() if k not in columns}
        missing = [c for c in args.columns if c not in columns and c not in extra]
        if missing:
            raise SystemExit(f"no column {missing[0]!r} in {args.folder}; it has: {', '.join([*columns, *extra])}")
        print(f"{board.dataset} · {board.profile}; reference {board.reference}; {board.support}\n")
        header = ["configuration", "seeds"] + [h for c in args.columns for h in (c, "Δ")]
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for e in sorted(board.entries, key=lambda e: (e.method != "vanilla", e.method, e.point)):
            name = f"{e.method} {e.point}".strip() + (" (diverged, not ranked)" if e.diverged else "")
            cells = [name, str(len(e.seeds))]
            for key in args.columns:
                if key in columns:
                    d = e.comparisons.get(key)
                    cells += [cell_text(e.cells.get(key), columns[key]), difference_text(d, columns[key]) if d else ""]
                else:  # not on the board: the cell alone, no comparison
                    group = (board.dataset, board.profile, e.method, e.config_key)
                    cells += [cell_text(table.cell(group, key), extra[key]), ""]
            print("| " + " | ".join(cells) + " |")
        print()


def per_explainer(boards, table, prefixes: list[str]) -> None:
    for board in boards:
        entries = sorted(board.entries, key=lambda e: (e.method != "vanilla", e.method, e.point))
        for prefix in prefixes:
            keys = {k.rsplit(": ", 1)[1]: k for k in table.columns if k.startswith(prefix + ": ")}
            if not keys:
                raise SystemExit(f"no column starts with {prefix!r}")
            print(f"{board.dataset} · {board.profile}: {prefix}\n")
            header = ["explainer"] + [f"{e.method} {e.point}".strip() for e in entries]
            print("| " + " | ".join(header) + " |")
            print("|" + "---|" * len(header))
            for explainer, key in keys.items():
                cells = [cell_text(table.cell((board.dataset, board.profile, e.method, e.config_key), key),
                                   table.columns[key]) for e in entries]
                print("| " + " | ".join([explainer, *cells]) + " |")
            print()


def selection(folder: Path) -> None:
    frame = read_results([folder])[0]
    rows = frame[frame["suite"] == "selection"]
    for (method, dataset, profile), part in rows.groupby(["method", "dataset", "profile"]):
        print(f"{dataset} · {profile}: {method}\n")
        print("| point | seeds | val score (%) | clean val (%) | chosen |")
        print("|---|---|---|---|---|")
        for record in part.sort_values("value", ascending=False).to_dict("records"):
            extra = json.loads(record["extra"])
            point = " ".join(f"{k.split('.', 1)[-1]}={v}" for k, v in sorted(extra["point"].items()))
            print(f"| {point} | {','.join(map(str, extra['seeds']))} | {100 * record['value']:.1f} | "
                  f"{100 * extra['clean_val_accuracy']:.1f} | {'yes' if extra['selected'] else ''} |")
        print()


if __name__ == "__main__":
    main()
