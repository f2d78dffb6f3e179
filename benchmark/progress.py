"""Progress reporting: rich bars on a terminal, one summary line per task otherwise."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class Reporter:
    """Hands out progress tasks; `quiet` silences everything."""

    def __init__(self, console: Console | None = None, quiet: bool = False):
        self.console = console or Console(stderr=True)
        self.quiet = quiet

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False)

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[..., None]]:
        """Yields update(advance=1, **info): info (e.g. loss=0.3) is shown beside the bar."""
        info: dict[str, str] = {}
        started = time.perf_counter()

        def fmt() -> str:
            return "  ".join(f"{k} {v}" for k, v in info.items())

        if self.quiet:
            yield lambda advance=1, **kw: None
            return
        if not self.console.is_terminal:
            def update(advance: int = 1, **kw) -> None:
                info.update({k: _fmt(v) for k, v in kw.items()})

            yield update
            self.console.print(f"{description}: {fmt()} ({time.perf_counter() - started:.1f} s)", highlight=False)
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[info]}"))
        with Progress(*columns, console=self.console, transient=False) as progress:
            task_id = progress.add_task(description, total=total, info="")

            def update(advance: int = 1, **kw) -> None:
                info.update({k: _fmt(v) for k, v in kw.items()})
                progress.update(task_id, advance=advance, info=fmt())

            yield update


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
