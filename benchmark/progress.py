"""Progress reporting: rich bars on a terminal, one summary line per task otherwise."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text


class Reporter:
    """Hands out progress tasks; `quiet` silences the console. A `listener` also receives every
    log line and task name as plain text (a sweep forwards them to its progress table)."""

    def __init__(self, console: Console | None = None, quiet: bool = False,
                 listener: Callable[[str], None] | None = None, warnings: bool = True):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.listener = listener
        self.warnings = warnings  # False only where another process speaks for this one (torchrun ranks)

    def warn(self, message: str) -> None:
        """One line that `quiet` does not silence: quiet stops progress, never a warning."""
        self._tell(message)
        if self.warnings:
            self.console.print(Text.assemble(("warning", "yellow"), f": {message}"), highlight=False, soft_wrap=True)

    def log(self, message: str | Text) -> None:
        """A line for the user: a str is plain text (names and paths are never read as markup),
        a rich Text carries its own styles."""
        self._tell(message)
        if not self.quiet:
            self.console.print(message, highlight=False, markup=False)

    def _tell(self, message: str | Text) -> None:
        if self.listener is not None:
            self.listener((message.plain if isinstance(message, Text) else message).strip())

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[..., None]]:
        """Yields update(advance=1, **info): info (e.g. loss=0.3) is shown beside the bar."""
        info: dict[str, str] = {}
        started = time.perf_counter()
        self._tell(description)

        def fmt() -> str:
            return "  ".join(f"{k} {v}" for k, v in info.items())

        if self.quiet:
            yield lambda advance=1, **kw: None
            return
        if not self.console.is_terminal:
            def update(advance: int = 1, **kw) -> None:
                info.update({k: _fmt(v) for k, v in kw.items()})

            yield update
            self.console.print(f"{description}: {fmt()} ({time.perf_counter() - started:.1f} s)", highlight=False,
                               markup=False)
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[info]}"))
        with Progress(*columns, console=self.console, transient=False) as progress:
            task_id = progress.add_task(escape(description), total=total, info="")

            def update(advance: int = 1, **kw) -> None:
                info.update({k: _fmt(v) for k, v in kw.items()})
                progress.update(task_id, advance=advance, info=escape(fmt()))

            yield update


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
