"""The relation section of each board (benchmark/results/relation.py): an inline SVG scatter, HTML through
the templates, a Markdown section and CSV rows with the same numbers."""

from __future__ import annotations

import csv
import io
import math

from markupsafe import Markup

from benchmark.results.relation import Relation
from benchmark.results.summary import INTERVAL_NOTE, rho_text
from benchmark_leaderboard.boards import Board
from benchmark_leaderboard.shared import PALETTE, environment, spreadsheet_safe

FIELDS = ["dataset", "profile", "explainer", "agreement", "robustness", "rho", "rho_low", "rho_high", "p", "p_holm",
          "partial_rho", "partial_low", "partial_high", "partial_p", "partial_p_holm", "models"]


def scatter(relation: Relation, w: int = 380, h: int = 240) -> Markup:
    """Agreement (x) against background robust accuracy (y), one point per configuration, 95 %
    intervals over seeds as bars; drawn without JavaScript."""
    points = relation.points
    values = [v for p in points for c in (p.x, p.y) for v in (c.mean, c.low, c.high) if math.isfinite(v)]
    lo, hi = max(0.0, min(values, default=0.0) - 0.05), min(1.0, max(values, default=1.0) + 0.05)
    left, right, top, bottom = 44, 120 if len(points) <= 12 else 16, 24, 34
    span = (hi - lo) or 1.0

    def x(v: float) -> float:
        return left + (w - left - right) * (min(max(v, lo), hi) - lo) / span

    def y(v: float) -> float:
        return top + (h - top - bottom) * (1 - (min(max(v, lo), hi) - lo) / span)

    ticks = [lo + span * k / 4 for k in range(5)]
    coloured = [(p, PALETTE[i % len(PALETTE)]) for i, p in enumerate(points)]
    best = relation.best
    title = f"{best.explainer if best else ''} {relation.metric.replace('_', ' ')} (x) vs {relation.target} (y), %"
    return Markup(environment().get_template("scatter.svg.j2").render(
        title=title, points=coloured, ticks=ticks, x=x, y=y, w=w, h=h, left=left, right=right, top=top,
        bottom=bottom, xlabel=f"{relation.metric.replace('_', ' ')} (%)"))


def markdown(board: Board, cell) -> list[str]:
    """The relation section of a board in Markdown (`cell` escapes text for a table cell)."""
    r = board.relation
    if r is None:
        return []
    out = ["### Does looking at the object predict robustness to the background?", ""]
    if r.reason:
        return out + [cell(r.reason) + ".", ""]
    out += [cell(r.verdict), "", f"Spearman's ρ over {r.configurations} configurations (means of their seeds; "
            f"{r.models} trained models){INTERVAL_NOTE}; partial ρ given clean test accuracy.", "",
            f"| explainer | ρ({cell(r.metric)}, {cell(r.target)}) | partial ρ given clean |", "|---|---|---|"]
    out += [f"| {cell(c.explainer)} | {rho_text(c.rho, c.low, c.high, p_adjusted=c.p_adjusted)} | "
            f"{rho_text(c.partial, c.partial_low, c.partial_high, p_adjusted=c.p_partial_adjusted)} |"
            for c in r.ranking]
    if r.within:
        out += ["", f"Within each model, upper minus lower half by {cell(r.best.explainer if r.best else '')} "
                f"relevance mass, robust accuracy in points:", "", "| configuration | difference | runs |",
                "|---|---|---|"]
        out += [f"| {cell(w.label)} | {rho_text(w.difference, w.low, w.high, scale=100)} | {w.runs} |"
                for w in r.within]
    return out + [""]


def render_relation_csv(boards: list[Board]) -> str:
    """Every correlation of every board as CSV rows."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for b in boards:
        for c in (b.relation.correlations if b.relation else []):
            writer.writerow({k: spreadsheet_safe(v) for k, v in {
                "dataset": b.dataset, "profile": b.profile, "explainer": c.explainer, "agreement": c.metric,
                "robustness": c.target, "rho": c.rho, "rho_low": c.low, "rho_high": c.high, "p": c.p,
                "p_holm": c.p_adjusted, "partial_rho": c.partial, "partial_low": c.partial_low,
                "partial_high": c.partial_high, "partial_p": c.p_partial, "partial_p_holm": c.p_partial_adjusted,
                "models": c.models}.items()})
    return buffer.getvalue()
