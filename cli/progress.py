"""Progress for long work: a rich bar with rate and ETA on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _RateColumn(ProgressColumn):
    """Items per second, e.g. ``1.84/s``."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-.--/s" if speed is None else f"{speed:.2f}/s", style="progress.data.speed")


@contextmanager
def progress_reporter(what: str, *, plain_every: float = 5.0) -> Iterator:
    """A ``progress(done, total, name="")`` callback for the library's long stages.

    On a terminal: a rich progress bar with rate and ETA (and the current item's name).
    Otherwise (logs, pipes, CI): a plain line on stderr for the first item, then at most every
    ``plain_every`` seconds, and for the last.
    """
    console = Console(stderr=True)
    if console.is_terminal:
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[item]}"),
            console=console,
            transient=False,
        )
        task_id = None

        def update(done: int, total: int, name: str = "") -> None:
            nonlocal task_id
            if task_id is None:
                task_id = bar.add_task(what, total=total, item="")
            bar.update(task_id, completed=done, total=total, item=name)

        with bar:
            yield update
        return

    started = time.monotonic()
    last = [0.0]

    def plain(done: int, total: int, name: str = "") -> None:
        now = time.monotonic() - started
        if done in (1, total) or now - last[0] >= plain_every:
            last[0] = now
            rate = done / now if now > 0 else 0.0
            eta = f"ETA {(total - done) / rate:.0f} s" if rate > 0 else "ETA ?"
            print(
                f"{what}: {done}/{total} ({rate:.2f}/s, elapsed {now:.0f} s, {eta}) {name}".rstrip(),
                file=sys.stderr,
                flush=True,
            )

    yield plain
