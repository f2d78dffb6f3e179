"""The leaderboard's three renderings of the same boards: an HTML page from a Jinja2 template
(autoescaped: names from result files are text, never markup), Markdown and CSV (escaped for
Markdown's inline HTML and against spreadsheet formulas)."""

from __future__ import annotations

import csv
import io
import math
from html import escape
from pathlib import Path
from typing import Sequence

from markupsafe import Markup

from benchmark.results.aggregate import Cell
from benchmark.results.columns import Column, eps_label
from benchmark.results.summary import INTERVAL_NOTE, cell_text, difference_text, number, rho_text
from benchmark.stats.intervals import PairedDifference
from benchmark_leaderboard.boards import Board
from benchmark_leaderboard.relation_section import markdown as relation_markdown
from benchmark_leaderboard.relation_section import scatter
from benchmark_leaderboard.shared import PALETTE, TEMPLATES, environment, spreadsheet_safe


def value(cell: Cell | None, column: Column | None) -> str:
    if cell is None:
        return "—"
    return number(cell.mean, column) if column is not None else f"{100 * cell.mean:.1f}"


def bounds(cell: Cell, column: Column | None) -> str:
    fmt = (lambda v: number(v, column)) if column is not None else (lambda v: f"{100 * v:.1f}")
    return f"{fmt(cell.low)}, {fmt(cell.high)}"


def sort_value(cell: Cell | None) -> str:
    return "" if cell is None or math.isnan(cell.mean) else f"{cell.mean:.10g}"


def difference_note(d: PairedDifference, reference: str) -> str:
    what = f"paired difference to {reference} over {d.seeds} seed(s)" + (f" and {d.samples} samples" if d.samples
                                                                          else " (seed means)")
    p = f"; exact McNemar p = {d.p_mcnemar:.3g}" if d.p_mcnemar is not None else ""
    if d.p_adjusted is not None:
        p += f"; p = {d.p:.3g}, Holm-adjusted {d.p_adjusted:.3g}"
    return what + p + ("; significant after adjustment" if d.significant else "; not significant")


def curve(title: str, lines: dict[str, list[tuple[float, Cell]]], w: int = 360, h: int = 220) -> Markup:
    """An inline SVG of robust accuracy (0-100 %) against eps, one line per configuration, with
    interval bars, drawn from a template (autoescaped) without JavaScript."""
    eps_values = sorted({e for points in lines.values() for e, _ in points})
    lo, hi = eps_values[0], eps_values[-1]
    left, right, top, bottom = 44, 110, 24, 34
    span = (hi - lo) or 1.0

    def x(e: float) -> float:
        return left + (w - left - right) * ((e - lo) / span if hi > lo else 0.5)

    def y(v: float) -> float:
        return top + (h - top - bottom) * (1 - min(max(v, 0.0), 1.0))

    drawn = [(name, points, PALETTE[i % len(PALETTE)]) for i, (name, points) in enumerate(sorted(lines.items()))]
    return Markup(environment().get_template("curve.svg.j2").render(
        title=title, lines=drawn, eps_values=eps_values, x=x, y=y, w=w, h=h, left=left, right=right, top=top,
        bottom=bottom, eps_label=eps_label))


def render_html(boards: list[Board], problems: Sequence[str], sources: Sequence[str], generated: str) -> str:
    template = environment().get_template("leaderboard.html.j2")
    return template.render(
        boards=boards, problems=problems, sources=sources, generated=generated,
        folders=", ".join(sorted({str(Path(s).parent) for s in sources})),
        css=Markup((TEMPLATES / "style.css").read_text()), sort_js=Markup((TEMPLATES / "sort.js").read_text()),
        value=value, bounds=bounds, sort_value=sort_value, difference=difference_text, scatter=scatter, rho=rho_text,
        difference_note=difference_note, curve=curve, interval_note=INTERVAL_NOTE.lstrip("; "))


FIELDS = ["dataset", "profile", "rank", "tied", "method", "config_key", "seeds", "column", "kind", "metric", "mean",
          "low", "high", "interval_over", "std", "training_seeds", "attack_seeds", "samples", "reference",
          "difference", "difference_low", "difference_high", "significant", "p", "p_holm", "p_mcnemar", "flags",
          "selected", "external", "diverged", "point"]


def records(boards: list[Board]) -> list[dict[str, object]]:
    """The ranked tables as flat records (the CSV rows): one per entry and column."""
    rows = []
    for b in boards:
        for e in b.entries:
            for c in b.columns:
                cell = e.cells.get(c.key)
                if cell is None:
                    continue
                d = e.comparisons.get(c.key)
                rows.append({"dataset": b.dataset, "profile": b.profile, "rank": e.rank, "tied": e.tied,
                             "method": e.method, "config_key": e.config_key, "seeds": len(e.seeds), "column": c.key,
                             "kind": c.kind, "metric": c.metric, "mean": cell.mean, "low": _blank(cell.low),
                             "high": _blank(cell.high), "interval_over": cell.over, "std": _blank(cell.std),
                             "training_seeds": cell.seeds, "attack_seeds": cell.attack_seeds,
                             "samples": cell.samples, "reference": b.reference if d else "",
                             "difference": _blank(d.difference) if d else "",
                             "difference_low": _blank(d.low) if d else "",
                             "difference_high": _blank(d.high) if d else "", "significant": d.significant if d else "",
                             "p": _blank(d.p) if d else "",
                             "p_holm": "" if d is None or d.p_adjusted is None else d.p_adjusted,
                             "p_mcnemar": "" if d is None or d.p_mcnemar is None else d.p_mcnemar,
                             "flags": ",".join(cell.flags), "selected": bool(e.selected), "external": e.external,
                             "diverged": e.diverged, "point": e.point})
    return rows


def render_csv(boards: list[Board]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in records(boards))
    return buffer.getvalue()


def render_markdown(boards: list[Board]) -> str:
    def cell(text: str) -> str:  # Markdown renders inline HTML: names from result files are escaped
        return escape(text, quote=False).replace("|", "\\|").replace("\n", " ")

    out = ["# Saliency-robustness leaderboard", ""]
    for b in boards:
        out += [f"## {cell(b.dataset)} · {cell(b.profile)} profile", "", cell(b.rule), "", cell(b.support), ""]
        if b.caution:
            out += [f"> {cell(b.caution)}", ""]
        header = ["#", "method", "config", "seeds", *[c.key for c in b.columns]]
        out.append("| " + " | ".join(cell(h) for h in header) + " |")
        out.append("|" + "---|" * len(header))
        for e in b.entries:
            values = []
            for c in b.columns:
                text = cell_text(e.cells.get(c.key), c)
                if c.key in e.comparisons:
                    text += f" (Δ {difference_text(e.comparisons[c.key], c)})"
                values.append(text)
            method = f"{e.method} ✓" if e.selected else e.method
            method += (" (external)" if e.external else "") + (f" [{e.point}]" if e.point else "")
            rank = "—" if e.diverged else f"{e.rank}=" if e.tied else str(e.rank)
            method += " (diverged, not ranked)" if e.diverged else ""
            out.append("| " + " | ".join(cell(v) for v in [rank, method, e.config_key[:8], str(len(e.seeds)),
                                                           *values]) + " |")
        out.append("")
        out += sanity_markdown(b, cell)
        out += relation_markdown(b, cell)
    out.append("Numbers are percentages with 95 % intervals in brackets; Δ is the paired difference to the reference "
               "(* = significant after Holm's adjustment over the board's comparisons; the intervals are unadjusted); "
               "⚠ marks sanity flags (see the HTML report); ✓ a configuration a sweep selected; "
               "(external) a model trained elsewhere (`benchmark evaluate`); "
               "= a rank shared with the leader of its group.")
    return "\n".join(out) + "\n"


def sanity_markdown(board: Board, cell) -> list[str]:
    """The randomisation checks of a board: one table per check, explainers as columns."""
    out = []
    for title, (column, table) in board.sanity.items():
        explainers = sorted({x for row in table.values() for x in row})
        out += [f"### {cell(title)}", "", "| configuration | " + " | ".join(cell(x) for x in explainers) + " |",
                "|" + "---|" * (len(explainers) + 1)]
        out += ["| " + " | ".join([cell(label), *(cell(cell_text(row.get(x), column)) for x in explainers)]) + " |"
                for label, row in table.items()]
        out.append("")
    if board.insensitive:
        out += [f"Model-insensitive explainers (maps survive full randomisation; left out of the relation's verdict): "
                f"{cell(', '.join(board.insensitive))}.", ""]
    return out


def _blank(v: float) -> object:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
