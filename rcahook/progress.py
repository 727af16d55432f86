"""Progress bars on a terminal (rich), silence in hooks, CI and pipes."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def interactive() -> bool:
    # git hooks run with a terminal on stderr, but a bar there would garble git's output
    if os.environ.get("CI") or os.environ.get("RCAHOOK_QUIET") or os.environ.get("PRE_COMMIT"):
        return False
    return sys.stderr.isatty()


class Progress:
    def __init__(self, *, enabled: bool | None = None):
        self.enabled = interactive() if enabled is None else enabled
        self._rich = None

    @contextmanager
    def task(self, description: str, *, total: int | None) -> Iterator[Callable[[int], None]]:
        if not self.enabled or not total:
            def ignore(n: int = 1) -> None:
                pass

            yield ignore
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        with RichProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True,
        ) as bar:
            task_id = bar.add_task(description, total=total)

            def advance(n: int = 1) -> None:
                bar.advance(task_id, n)

            yield advance
