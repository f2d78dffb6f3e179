"""The leaderboard: one self-contained HTML page, plus Markdown and CSV, from the Parquet results.

Reads only result files (`benchmark.store.read_results`). A configuration is an entry: rows of
one `config_key` (the resolved config without the seed) in one dataset and profile; copies of a
run count once and the validation-only candidates of a sweep are left out (`reported_rows`),
attack seeds are averaged within a run, and the entry's numbers are the mean and standard
deviation over its training seeds. An entry that a sweep selected carries the selection's note.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Sequence

import pandas as pd

from benchmark.files import write_atomically
from benchmark.store import reported_rows, read_results
from benchmark.summary import eps_label

HEATMAP_EXPLAINERS = ("saliency", "integrated_gradients", "grad_cam", "pixel_mask")


@dataclass
class Column:
    key: str  # label shown in the header, unique within a dataset table
    kind: str  # clean | robust | corruption | derived | attribution
    note: str = ""  # tooltip: what the column measures


@dataclass
class Entry:
    method: str
    config_key: str
    seeds: list[int]
    values: dict[str, tuple[float, float, int]]  # column -> (mean, std over seeds, number of seeds)
    flags: dict[str, list[str]]  # column -> sanity flags seen in any of its rows
    provenance: dict[str, str]
    heatmaps: dict[str, bytes] = field(default_factory=dict)  # explainer -> PNG bytes
    selected: str = ""  # how a sweep selected this configuration ("" when none did)


@dataclass
class Board:
    dataset: str
    profile: str
    columns: list[Column]
    entries: list[Entry]  # ranked
    rule: str
    curves: dict[str, dict[str, list[tuple[float, float, float]]]]  # attack/region -> method -> (eps, mean, std)
    attribution: dict[str, dict[str, float]]  # method -> explainer -> relevance mass accuracy


def column_of(row: pd.Series) -> Column | None:
    """The leaderboard column a result row feeds, or None for rows the page does not show."""
    suite, metric = row["suite"], row["metric"]
    if suite == "accuracy" and metric == "accuracy":
        return Column(f"clean {row['eval_set']}", "clean", f"clean accuracy on {row['eval_set']}")
    if suite == "robustness" and metric == "robust_accuracy" and row["attack"] != "noise":
        norm = "" if row["norm"] == "linf" else f" {row['norm']}"
        label = f"{row['attack']}{norm} {row['region']} {eps_label(row['eps'])}"
        return Column(label, "robust", f"robust accuracy, {row['attack']} confined to {row['region']}, "
                                        f"eps {row['eps']:.4g} ({row['norm']})")
    if suite == "corruptions" and metric == "corrupted_accuracy":
        return Column(f"{row['attack']} {row['region']} s{int(row['severity'])}", "corruption",
                      f"accuracy under {row['attack']} of severity {int(row['severity'])} in {row['region']}")
    if suite == "derived":
        return Column(str(metric), "derived", "derived from accuracies")
    if suite == "attribution" and metric in ("relevance_mass_accuracy", "pixel_auroc") and row["explainer"] \
            and '"comparison": true' not in row["extra"]:
        name = "mass" if metric == "relevance_mass_accuracy" else "AUROC"
        return Column(f"attribution {name} (mean)", "attribution",
                      f"{metric} averaged over the explainers run (docs/METRICS.md)")
    return None


def per_run(frame: pd.DataFrame) -> pd.DataFrame:
    """One value per (run, column): attack seeds and, for attribution, explainers averaged."""
    frame = frame.copy()
    cols = [column_of(r) for _, r in frame.iterrows()]
    frame["column"] = [c.key if c else None for c in cols]
    frame["kind"] = [c.kind if c else None for c in cols]
    frame["note"] = [c.note if c else None for c in cols]
    frame = frame[frame["column"].notna()]
    grouped = frame.groupby(["dataset", "profile", "method", "config_key", "run_key", "seed", "column"], sort=False)
    out = grouped.agg(value=("value", "mean"), kind=("kind", "first"), note=("note", "first"),
                      flags=("flags", lambda f: sorted({x for s in f for x in str(s).split(",") if x})),
                      eps=("eps", "first"), attack=("attack", "first"), region=("region", "first"))
    return out.reset_index()


def selections(frame: pd.DataFrame) -> dict[str, str]:
    """config_key of each configuration a sweep selected -> a note on how (from 'selection' rows)."""
    notes = {}
    for _, row in frame[frame["suite"] == "selection"].iterrows():
        extra = json.loads(row["extra"] or "{}")
        if extra.get("selected") and extra.get("final_config_key"):
            notes[extra["final_config_key"]] = (
                f"selected by a sweep among {extra.get('candidates', '?')} grid points: highest mean robust "
                f"val accuracy under full-image PGD eps {row['eps']:.4g} ({100 * row['value']:.1f} %)")
    return notes


def build_boards(frame: pd.DataFrame) -> list[Board]:
    frame = reported_rows(frame)
    chosen = selections(frame)
    runs = per_run(frame)
    boards = []
    for (dataset, profile), part in runs.groupby(["dataset", "profile"], sort=True):
        first = part.drop_duplicates("column")
        order = {"clean": 0, "robust": 1, "corruption": 2, "derived": 3, "attribution": 4}
        first = first.sort_values(by=["kind", "column"], key=lambda s: s.map(order) if s.name == "kind" else s)
        columns = [Column(r["column"], r["kind"], r["note"]) for _, r in first.iterrows()]
        clean_test = next((c.key for c in columns if c.key == "clean test"),
                          next((c.key for c in columns if c.kind == "clean"), None))
        primary = next((c.key for c in columns if c.kind == "robust" and " full " not in f" {c.key} "), None)
        primary = primary or next((c.key for c in columns if c.kind == "robust"), None) or clean_test
        entries = []
        for (method, key), rows in part.groupby(["method", "config_key"], sort=True):
            sub = frame[(frame["config_key"] == key) & (frame["dataset"] == dataset)]
            values, flags = {}, {}
            for column, cells in rows.groupby("column"):
                std = float(cells["value"].std(ddof=1)) if len(cells) > 1 else float("nan")
                values[column] = (float(cells["value"].mean()), std, len(cells))
                seen = sorted({f for fl in cells["flags"] for f in fl})
                if seen:
                    flags[column] = seen
            entries.append(Entry(method, key, sorted(int(s) for s in rows["seed"].unique()), values, flags,
                                 provenance(sub), heatmaps(sub), chosen.get(key, "")))
        entries.sort(key=lambda e: (-e.values.get(primary, (float("-inf"),))[0],
                                    -e.values.get(clean_test, (float("-inf"),))[0], e.method))
        rule = (f"Ranked by mean {primary} (higher is better), ties broken by {clean_test}; each number is the "
                "mean over training seeds (± standard deviation when there are several), attack seeds "
                "averaged within a run. A configuration is one resolved config without its seed.")
        boards.append(Board(dataset, profile, columns, entries, rule, curves(part), attribution_table(frame, dataset,
                                                                                                     profile)))
    return boards


def curves(runs: pd.DataFrame) -> dict[str, dict[str, list[tuple[float, float, float]]]]:
    robust = runs[runs["kind"] == "robust"]
    out: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    for (attack, region), part in robust.groupby(["attack", "region"], sort=True):
        lines = {}
        for method, rows in part.groupby("method", sort=True):
            points = rows.groupby("eps")["value"].agg(["mean", "std"]).reset_index()
            lines[method] = [(float(r["eps"]), float(r["mean"]), float(r["std"]) if pd.notna(r["std"]) else 0.0)
                             for _, r in points.iterrows()]
        out[f"{attack} · {region}"] = lines
    return out


def attribution_table(frame: pd.DataFrame, dataset: str, profile: str) -> dict[str, dict[str, float]]:
    part = frame[(frame["dataset"] == dataset) & (frame["profile"] == profile) & (frame["suite"] == "attribution")
                 & (frame["metric"] == "relevance_mass_accuracy")
                 & ~frame["extra"].str.contains('"comparison": true', regex=False)]
    table: dict[str, dict[str, float]] = {}
    for (method, explainer), rows in part.groupby(["method", "explainer"], sort=True):
        table.setdefault(method, {})[explainer] = float(rows["value"].mean())
    return table


def provenance(rows: pd.DataFrame) -> dict[str, str]:
    latest = rows.sort_values("created").iloc[-1]
    return {
        "commit": ", ".join(sorted(set(rows["git_commit"].astype(str)))),
        "device": ", ".join(sorted(set(rows["device"].astype(str)))),
        "created": ", ".join(sorted({str(c)[:19] for c in rows["created"]})),
        "versions": str(latest["versions"]),
        "files": ", ".join(sorted({Path(f).name for f in rows["source_file"]})),
        "config": json.dumps(json.loads(latest["config"]), indent=1, sort_keys=True),
    }


def heatmaps(rows: pd.DataFrame) -> dict[str, bytes]:
    """Example attribution maps of the entry's lowest seed, read from the run's artefact folder."""
    found = {}
    for source in sorted(set(rows.sort_values("seed")["source_file"]), key=lambda s: s):
        folder = Path(source).parent / "artifacts" / Path(source).stem / "attribution"
        for name in HEATMAP_EXPLAINERS:
            png = folder / f"{name}.png"
            if name not in found and png.is_file():
                found[name] = png.read_bytes()
        if found:
            break
    return found


# -- rendering ------------------------------------------------------------------------------
def percent(mean: float, std: float) -> str:
    if pd.isna(mean):
        return "—"
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if pd.notna(std) else "")


def render_html(boards: list[Board], problems: Sequence[str], sources: Sequence[str], generated: str) -> str:
    parts = [HEAD, "<h1>Saliency-robustness leaderboard</h1>",
             f"<p class=meta>Generated {escape(generated)} from {len(sources)} result file(s) in "
             f"{escape(', '.join(sorted({str(Path(s).parent) for s in sources})))}. Numbers are percentages.</p>"]
    if problems:
        parts.append("<div class=problems><strong>Skipped files</strong><ul>"
                     + "".join(f"<li>{escape(p)}</li>" for p in problems) + "</ul></div>")
    if not boards:
        parts.append("<p>No results.</p>")
    for i, board in enumerate(boards):
        parts.append(render_board(board, f"t{i}"))
    parts.append(f"<script>{SORT_JS}</script></body></html>")
    return "\n".join(parts)


def render_board(board: Board, table_id: str) -> str:
    out = [f"<section><h2>{escape(board.dataset)} · {escape(board.profile)} profile</h2>",
           f"<p class=rule>{escape(board.rule)}</p>",
           f"<div class=scroll><table class=sortable id={table_id}><thead><tr>",
           "<th data-type=num title='rank by the rule above'>#</th><th data-type=text>method</th>",
           "<th data-type=text title='config key: hash of the resolved config without the seed'>config</th>",
           "<th data-type=num>seeds</th>"]
    out += [f"<th data-type=num title='{escape(c.note)}'>{escape(c.key)}</th>" for c in board.columns]
    out.append("</tr></thead><tbody>")
    for rank, e in enumerate(board.entries, 1):
        badge = f" <span class=sel title='{escape(e.selected)}'>✓ selected</span>" if e.selected else ""
        cells = [f"<td data-value={rank}>{rank}</td>", f"<td data-value='{escape(e.method)}'>{escape(e.method)}{badge}</td>",
                 f"<td data-value='{escape(e.config_key)}'><code>{escape(e.config_key[:8])}</code></td>",
                 f"<td data-value={len(e.seeds)}>{len(e.seeds)}</td>"]
        for c in board.columns:
            mean, std, _ = e.values.get(c.key, (float("nan"), float("nan"), 0))
            flag = e.flags.get(c.key)
            mark = (f" <span class=flag title='sanity flags: {escape(', '.join(flag))}'>⚠</span>" if flag else "")
            sort_value = "" if pd.isna(mean) else f"{mean:.10g}"
            cls = " class=flagged" if flag else ""
            cells.append(f"<td{cls} data-value='{sort_value}'>{percent(mean, std)}{mark}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    if any(len(points) > 0 for lines in board.curves.values() for points in lines.values()):
        out.append("<h3>Robust accuracy against eps</h3><div class=curves>")
        out += [svg_curve(title, lines) for title, lines in board.curves.items()]
        out.append("</div>")
    if board.attribution:
        explainers = sorted({x for row in board.attribution.values() for x in row})
        out.append("<h3>Relevance mass on the object, per explainer</h3><div class=scroll><table><thead><tr>"
                   "<th>method</th>" + "".join(f"<th>{escape(x)}</th>" for x in explainers) + "</tr></thead><tbody>")
        for method, row in board.attribution.items():
            out.append(f"<tr><td>{escape(method)}</td>" + "".join(
                f"<td>{percent(row.get(x, float('nan')), float('nan'))}</td>" for x in explainers) + "</tr>")
        out.append("</tbody></table></div>")
    with_maps = [e for e in board.entries if e.heatmaps]
    if with_maps:
        out.append("<h3>Example attribution maps (images on top, maps below)</h3><div class=maps>")
        for e in with_maps:
            for name, png in e.heatmaps.items():
                data = base64.b64encode(png).decode("ascii")
                out.append(f"<figure><img alt='{escape(name)} maps of {escape(e.method)}' "
                           f"src='data:image/png;base64,{data}'><figcaption>{escape(e.method)} · {escape(name)}"
                           "</figcaption></figure>")
        out.append("</div>")
    out.append("<h3>Provenance</h3>")
    for e in board.entries:
        p = e.provenance
        out.append(f"<details><summary>{escape(e.method)} <code>{escape(e.config_key)}</code>, seeds "
                   f"{escape(', '.join(map(str, e.seeds)))}</summary><dl>"
                   + "".join(f"<dt>{escape(k)}</dt><dd>{escape(p[k])}</dd>" for k in
                             ("commit", "device", "created", "files", "versions"))
                   + f"</dl><pre>{escape(p['config'])}</pre></details>")
    out.append("</section>")
    return "\n".join(out)


PALETTE = ("#1b6ac9", "#d1495b", "#2e933c", "#edae49", "#6c4ab6", "#00798c", "#8d6a52", "#444444")


def svg_curve(title: str, lines: dict[str, list[tuple[float, float, float]]], w: int = 360, h: int = 220) -> str:
    """An inline SVG line chart of robust accuracy (0-100 %) against eps, one line per method."""
    eps_values = sorted({p[0] for pts in lines.values() for p in pts})
    lo, hi = eps_values[0], eps_values[-1]
    span = (hi - lo) or 1.0
    left, right, top, bottom = 44, 110, 24, 34

    def x(e: float) -> float:
        return left + (w - left - right) * ((e - lo) / span if hi > lo else 0.5)

    def y(v: float) -> float:
        return top + (h - top - bottom) * (1 - v)

    out = [f"<figure class=curve><svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' role='img' "
           f"aria-label='{escape(title)}'><text x='{left}' y='14' class=t>{escape(title)}</text>"]
    for v in (0, 0.5, 1):
        out.append(f"<line x1='{left}' x2='{w - right}' y1='{y(v):.1f}' y2='{y(v):.1f}' class=grid />"
                   f"<text x='{left - 6}' y='{y(v) + 4:.1f}' text-anchor='end'>{int(v * 100)}</text>")
    for e in eps_values:
        out.append(f"<text x='{x(e):.1f}' y='{h - bottom + 16}' text-anchor='middle'>{escape(eps_label(e))}</text>")
    for i, (method, pts) in enumerate(sorted(lines.items())):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{x(e):.1f},{y(m):.1f}" for e, m, _ in sorted(pts))
        out.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{path}' />")
        for e, m, s in pts:
            out.append(f"<circle cx='{x(e):.1f}' cy='{y(m):.1f}' r='3' fill='{colour}'><title>{escape(method)}: "
                       f"{percent(m, s)} at eps {escape(eps_label(e))}</title></circle>")
        out.append(f"<text x='{w - right + 8}' y='{top + 14 * i + 8}' style='fill:{colour}'>{escape(method)}</text>")
    out.append(f"<text x='{(left + w - right) / 2:.0f}' y='{h - 4}' text-anchor='middle'>eps</text></svg></figure>")
    return "".join(out)


def records(boards: list[Board]) -> list[dict[str, object]]:
    """The ranked tables as flat records (the CSV rows): one per entry and column."""
    rows = []
    for b in boards:
        for rank, e in enumerate(b.entries, 1):
            for c in b.columns:
                if c.key in e.values:
                    mean, std, n = e.values[c.key]
                    rows.append({"dataset": b.dataset, "profile": b.profile, "rank": rank, "method": e.method,
                                 "config_key": e.config_key, "seeds": len(e.seeds), "column": c.key, "kind": c.kind,
                                 "mean": mean, "std": "" if pd.isna(std) else std, "n_seeds": n,
                                 "flags": ",".join(e.flags.get(c.key, [])), "selected": bool(e.selected)})
    return rows


def render_csv(boards: list[Board]) -> str:
    buffer = io.StringIO()
    fields = ["dataset", "profile", "rank", "method", "config_key", "seeds", "column", "kind", "mean", "std",
              "n_seeds", "flags", "selected"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in records(boards))
    return buffer.getvalue()


def spreadsheet_safe(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a
    leading apostrophe (OWASP's advice against CSV injection); numbers stay numbers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def render_markdown(boards: list[Board]) -> str:
    def cell(text: str) -> str:  # Markdown renders inline HTML: names from result files are escaped
        return escape(text, quote=False).replace("|", "\\|").replace("\n", " ")

    out = ["# Saliency-robustness leaderboard", ""]
    for b in boards:
        out += [f"## {cell(b.dataset)} · {cell(b.profile)} profile", "", cell(b.rule), ""]
        header = ["#", "method", "config", "seeds", *[c.key for c in b.columns]]
        out.append("| " + " | ".join(cell(h) for h in header) + " |")
        out.append("|" + "---|" * len(header))
        for rank, e in enumerate(b.entries, 1):
            values = [percent(*e.values.get(c.key, (float("nan"), float("nan"), 0))[:2])
                      + (" ⚠" if c.key in e.flags else "") for c in b.columns]
            method = f"{e.method} ✓" if e.selected else e.method
            out.append("| " + " | ".join(cell(v) for v in [str(rank), method, e.config_key[:8],
                                                           str(len(e.seeds)), *values]) + " |")
        out.append("")
    out.append("Numbers are percentages; ⚠ marks a cell with sanity flags (see the HTML report); ✓ a "
               "configuration that a sweep selected on validation data.")
    return "\n".join(out) + "\n"


def build_report(results: Sequence[Path]) -> tuple[list[Board], list[str], list[str]]:
    """Boards, skipped-file messages and the result files used."""
    frame, problems = read_results(results)
    sources = sorted({str(f) for f in frame["source_file"]}) if not frame.empty else []
    return (build_boards(frame) if not frame.empty else []), problems, sources


HEAD = """<!doctype html>
<html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width, initial-scale=1'>
<title>Saliency-robustness leaderboard</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right;white-space:nowrap}
th{background:#f4f4f4;cursor:pointer;position:sticky;top:0}th[aria-sort=ascending]::after{content:' ▲'}
th[aria-sort=descending]::after{content:' ▼'}td:nth-child(2),td:nth-child(3){text-align:left}
.scroll{overflow-x:auto}.rule,.meta{color:#555}.flag{color:#b35c00;cursor:help}.sel{color:#2e7d32;cursor:help;font-size:.85em}.flagged{background:#fff4e5}
.problems{background:#fdecea;padding:.5em 1em;border-left:4px solid #d1495b}
.curves,.maps{display:flex;flex-wrap:wrap;gap:1em}.curve svg text{font-size:11px;fill:#333}.curve .t{font-weight:600}
.grid{stroke:#ddd}figure{margin:0}figure img{image-rendering:pixelated;max-width:560px;border:1px solid #ddd}
figcaption{color:#555;font-size:.9em}pre{background:#f7f7f7;padding:.5em;max-height:20em;overflow:auto}
dt{font-weight:600}dd{margin:0 0 .3em 1em;word-break:break-all}
</style></head><body>"""

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('thead th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var numeric = th.dataset.type === 'num';
      var dir = th.getAttribute('aria-sort') === 'descending' ? 'ascending' : 'descending';
      if (!numeric && !th.getAttribute('aria-sort')) { dir = 'ascending'; }
      table.querySelectorAll('thead th').forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', dir);
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
        if (numeric) {
          x = x === '' ? -Infinity : parseFloat(x); y = y === '' ? -Infinity : parseFloat(y);
        }
        var c = x < y ? -1 : (x > y ? 1 : 0);
        return dir === 'ascending' ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def write_report(results: Sequence[Path], out: Path, generated: str) -> tuple[list[Path], list[str]]:
    """Write OUT (HTML), OUT.md and OUT.csv from the same records; returns the paths and skipped files."""
    boards, problems, sources = build_report(results)
    html = render_html(boards, problems, sources, generated)
    paths = [write_atomically(out, lambda fh: fh.write(html.encode())),
             write_atomically(out.with_suffix(".md"), lambda fh: fh.write(render_markdown(boards).encode())),
             write_atomically(out.with_suffix(".csv"), lambda fh: fh.write(render_csv(boards).encode()))]
    return paths, problems
