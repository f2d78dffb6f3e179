"""Print docs/RESULTS.md's tables from a results folder, with today's statistics.

Usage: python scripts/results_table.py FOLDER [--reference CONFIG] COLUMN [COLUMN ...]

Each row is a configuration of the folder's board (named as the leaderboard names it), each
COLUMN (a column label as `benchmark results` prints it, e.g. "clean test", "pgd right_digit 1",
"relevance mass accuracy: saliency") a cell `mean [95 % interval]` followed by its paired
difference to the reference, starred when significant after Holm's adjustment over every
comparison the folder's leaderboard shows. The numbers are the leaderboard's own (same boards,
same intervals), so a table regenerates from the folder alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.results.summary import cell_text, difference_text
from benchmark_leaderboard.report import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("columns", nargs="+")
    parser.add_argument("--reference", default="vanilla")
    args = parser.parse_args()
    boards, problems, _ = build_report([args.folder], args.reference)
    for line in problems:
        print(f"skipped: {line}")
    for board in boards:
        columns = {c.key: c for c in board.columns}
        missing = [c for c in args.columns if c not in columns]
        if missing:
            raise SystemExit(f"no column {missing[0]!r} on the {board.dataset} board; it has: {', '.join(columns)}")
        print(f"{board.dataset} · {board.profile}; reference {board.reference}; {board.support}\n")
        header = ["configuration", "seeds"] + [h for c in args.columns for h in (c, "Δ")]
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for e in sorted(board.entries, key=lambda e: (e.method != "vanilla", e.method, e.point)):
            name = f"{e.method} {e.point}".strip() + (" (diverged, not ranked)" if e.diverged else "")
            cells = [name, str(len(e.seeds))]
            for key in args.columns:
                d = e.comparisons.get(key)
                cells += [cell_text(e.cells.get(key), columns[key]), difference_text(d, columns[key]) if d else ""]
            print("| " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()
