"""The live progress table of a sweep: queued, running, done, skipped and failed jobs.

On a terminal it is a rich Live table redrawn in place; in a log or pipe it prints one line per
job whenever the job starts or ends, so CI logs and `nohup` files stay readable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from benchmark.sweep.plan import Job
from benchmark.sweep.worker import Update

STYLES = {"queued": "dim", "running": "cyan", "done": "green", "skipped": "blue", "failed": "bold red"}
SHOWN_FINISHED = 12  # finished rows kept on screen (failed ones always are)
SHOWN_QUEUED = 6


@dataclass
class JobRow:
    job: Job
    status: str = "queued"
    detail: str = ""
    started: float | None = None
    duration_s: float | None = None


class SweepProgress:
    """Tracks every job's state; `live()` shows it while the sweep runs."""

    def __init__(self, console: Console, quiet: bool = False):
        self.console, self.quiet = console, quiet
        self.rows: dict[str, JobRow] = {}
        self.order: list[str] = []  # keys in the order they finished
        self._live: Live | None = None

    # -- state -------------------------------------------------------------------------------
    def add(self, job: Job, status: str = "queued", detail: str = "") -> None:
        if job.key in self.rows:
            return
        self.rows[job.key] = JobRow(job, status, detail)
        if status != "queued":
            self.order.append(job.key)
            self._line(self.rows[job.key])
        self.refresh()

    def update(self, update: Update) -> None:
        row = self.rows[update.key]
        if update.status == "running":
            first = row.status != "running"
            row.status, row.detail = "running", update.detail
            row.started = row.started or time.monotonic()
            if first:
                self._line(row)
        else:
            row.status, row.detail, row.duration_s = update.status, update.detail, update.duration_s
            self.order.append(update.key)
            self._line(row)
        self.refresh()

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STYLES}
        for row in list(self.rows.values()):
            out[row.status] += 1
        return out

    # -- display -----------------------------------------------------------------------------
    def __enter__(self) -> "SweepProgress":
        if not self.quiet and self.console.is_terminal:
            # rich redraws from its own thread, pulling the table (so running times tick)
            self._live = Live(console=self.console, refresh_per_second=4, transient=False, get_renderable=self.render)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(*exc)
            self._live = None

    def refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def render(self) -> Group:
        counts = self.counts()
        summary = Text("  ·  ".join(f"{name} {n}" for name, n in counts.items()), style="bold")
        table = Table(show_edge=False, pad_edge=False, expand=False)
        for column in ("stage", "method", "dataset", "seed", "grid point", "status", "time", "detail"):
            table.add_column(column, justify="right" if column in ("seed", "time") else "left",
                             overflow="ellipsis", no_wrap=True, max_width=60 if column == "detail" else None)
        rows, order = list(self.rows.items()), list(self.order)  # copies: the driver thread adds to both
        running = [k for k, r in rows if r.status == "running"]
        failed = [k for k in order if self.rows[k].status == "failed"]
        finished = [k for k in order if self.rows[k].status != "failed"][-SHOWN_FINISHED:]
        queued = [k for k, r in rows if r.status == "queued"]
        for key in failed + finished + running + queued[:SHOWN_QUEUED]:
            table.add_row(*self._cells(self.rows[key]))
        if len(queued) > SHOWN_QUEUED:
            table.add_row("", "", "", "", f"… {len(queued) - SHOWN_QUEUED} more queued", "", "", "")
        return Group(summary, table)

    def _cells(self, row: JobRow) -> list[str | Text]:
        job = row.job
        if row.duration_s is not None:
            elapsed = f"{row.duration_s:.0f} s"
        elif row.started is not None:
            elapsed = f"{time.monotonic() - row.started:.0f} s"
        else:
            elapsed = ""
        return [job.stage, Text(job.method), Text(job.dataset), str(job.seed), Text(job.label),
                Text(row.status, style=STYLES[row.status]), elapsed, Text(row.detail)]

    def _line(self, row: JobRow) -> None:
        """One log line per start and end of a job, when there is no live table."""
        if self.quiet or self.console.is_terminal:
            return
        job = row.job
        took = f" in {row.duration_s:.0f} s" if row.duration_s is not None else ""
        detail = f": {row.detail}" if row.detail and row.status != "running" else ""
        self.console.print(f"{row.status:>7} {job.stage} {job.method} {job.dataset} seed {job.seed} "
                           f"[{job.label}] {job.key}{took}{detail}", highlight=False, markup=False, soft_wrap=True)
