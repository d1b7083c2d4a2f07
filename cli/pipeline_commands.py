"""Commands of the feature pipeline: segment (METHOD.md section 2) and extract (section 3)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

from .common import DbOption, GroupOption, app, open_store, user_errors


# -- progress: a rich bar on a terminal, plain lines otherwise ---------------------------------
class _RateColumn(ProgressColumn):
    """Items per second, e.g. ``1.84/s``."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-.--/s" if speed is None else f"{speed:.2f}/s", style="progress.data.speed")


@contextmanager
def progress_reporter(what: str, *, plain_every: float = 5.0) -> Iterator:
    """A ``progress(done, total)`` callback: a rich progress bar with rate and ETA when stderr
    is a terminal, otherwise a plain line on stderr for the first item, then at most every
    ``plain_every`` seconds, and for the last."""
    console = Console(stderr=True)
    if console.is_terminal:
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       _RateColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                       console=console, transient=False)
        task_id = None

        def update(done: int, total: int) -> None:
            nonlocal task_id
            if task_id is None:
                task_id = bar.add_task(what, total=total)
            bar.update(task_id, completed=done, total=total)

        with bar:
            yield update
        return

    started = time.monotonic()
    last = [0.0]

    def plain(done: int, total: int) -> None:
        now = time.monotonic() - started
        if done in (1, total) or now - last[0] >= plain_every:
            last[0] = now
            rate = done / now if now > 0 else 0.0
            eta = (total - done) / rate if rate > 0 else float("nan")
            print(f"{what}: {done}/{total} ({rate:.2f}/s, elapsed {now:.0f} s, ETA {eta:.0f} s)",
                  file=sys.stderr, flush=True)

    yield plain


# -- commands ------------------------------------------------------------------------------
@app.command()
@user_errors
def segment(
    group: GroupOption = None,
    window: Annotated[float, typer.Option(help="Segment length in seconds.")] = 10.0,
    normalise: Annotated[bool, typer.Option(
        "--normalise/--no-normalise",
        help="ReplayGain loudness normalisation (the equal-loudness filter is always applied).")] = True,
    db: DbOption = None,
) -> None:
    """Choose the raw/stem segment pairs (METHOD.md section 2).

    For each multitrack and instrument: the stem's loudest window (the loudest stem when
    several share the label), and the raw of that stem with the most energy over the same
    interval. Stems that give no pair are recorded as skipped, with the reason (too short,
    silent, missing or unreadable audio, no raw). Incremental: stems already segmented are
    left alone; stale ones are redone.

    Example: `stemstore segment --group bass --group vocal --window 10`
    """
    from stemstore.segments import segment as run_segment

    with open_store(db) as store, progress_reporter("segmenting") as progress:
        summary = run_segment(store, groups=group, window=window, normalise=normalise,
                              progress=progress)
    typer.echo(summary.describe())


@app.command()
@user_errors
def extract(
    workers: Annotated[int, typer.Option(help="Local worker processes.")] = 1,
    dask: Annotated[Optional[str], typer.Option(
        "--dask", metavar="ADDRESS",
        help="Run on the Dask cluster at ADDRESS (e.g. tcp://scheduler:8786) instead of local "
             "processes. Workers need the corpus files at the same paths; results are written "
             "here, so they need no database access.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Extract at most this many segments.")] = None,
    db: DbOption = None,
) -> None:
    """Compute the 1812 catalog features of every pending segment (METHOD.md section 3).

    Each segment's values are written in one transaction with its status: interrupt or kill
    it at any moment and run it again to resume. A segment whose audio makes Essentia fail is
    recorded as failed with the error and the run goes on; the exit status is then 1.

    Example: `stemstore extract --workers 2`, or `stemstore extract --dask tcp://10.0.0.5:8786`
    """
    from stemstore.extraction import extract as run_extract

    with open_store(db) as store, progress_reporter("extracting") as progress:
        summary = run_extract(store, workers=workers, dask_address=dask, progress=progress, limit=limit)
    typer.echo(summary.describe())
    if summary.failed:
        raise typer.Exit(1)
