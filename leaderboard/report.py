"""The leaderboard report: read the results (and their per-sample records), build the boards,
write one self-contained HTML page plus Markdown and CSV from the same boards."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from benchmark.files import write_atomically
from benchmark.results.store import read_results
from benchmark_leaderboard.boards import Board, build_boards
from benchmark_leaderboard.relation_section import render_relation_csv
from benchmark_leaderboard.render import render_csv, render_html, render_markdown


def build_report(results: Sequence[Path], reference: str = "vanilla") -> tuple[list[Board], list[str], list[str]]:
    """Boards, skipped-file messages and the result files used."""
    frame, problems = read_results(results)
    sources = sorted({str(f) for f in frame["source_file"]}) if not frame.empty else []
    return (build_boards(frame, reference) if not frame.empty else []), problems, sources


def write_report(results: Sequence[Path], out: Path, generated: str, reference: str = "vanilla"
                 ) -> tuple[list[Path], list[str]]:
    """Write OUT (HTML), OUT.md, OUT.csv and OUT.relation.csv (the relation sections' correlations)
    from the same boards; returns the paths and skipped files."""
    boards, problems, sources = build_report(results, reference)
    html = render_html(boards, problems, sources, generated)
    paths = [write_atomically(out, lambda fh: fh.write(html.encode())),
             write_atomically(out.with_suffix(".md"), lambda fh: fh.write(render_markdown(boards).encode())),
             write_atomically(out.with_suffix(".csv"), lambda fh: fh.write(render_csv(boards).encode())),
             write_atomically(out.with_suffix(".relation.csv"),
                              lambda fh: fh.write(render_relation_csv(boards).encode()))]
    return paths, problems
