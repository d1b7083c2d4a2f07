"""Commands of the feature pipeline: segment and extract (docs/method.md, sections 2 and 3)."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import DbOption, GroupOption, app, open_store, user_errors
from .progress import progress_reporter


# -- commands ------------------------------------------------------------------------------
@app.command()
@user_errors
def segment(
    group: GroupOption = None,
    window: Annotated[float, typer.Option(help="Segment length in seconds.")] = 10.0,
    normalise: Annotated[
        bool,
        typer.Option(
            "--normalise/--no-normalise",
            help="ReplayGain loudness normalisation (the equal-loudness filter is always applied).",
        ),
    ] = True,
    db: DbOption = None,
) -> None:
    """Choose the raw/stem segment pairs (docs/method.md, section 2).

    For each multitrack and instrument: the stem's loudest window (the loudest stem when
    several share the label), and the raw of that stem with the most energy over the same
    interval. Stems that give no pair are recorded as skipped, with the reason (too short,
    silent, missing or unreadable audio, no raw). Incremental: stems already segmented are
    left alone; stale ones are redone.

    Example: `stemstore segment --group bass --group vocal --window 10`
    """
    from stemstore.segments import segment as run_segment

    with open_store(db) as store, progress_reporter("segmenting") as progress:
        summary = run_segment(store, groups=group, window=window, normalise=normalise, progress=progress)
    typer.echo(summary.describe())


@app.command()
@user_errors
def extract(
    workers: Annotated[int, typer.Option(help="Local worker processes.")] = 1,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            metavar="ADDRESS",
            help="Run on the Dask cluster at ADDRESS (e.g. tcp://scheduler:8786) instead of local "
            "processes. Workers need the corpus files at the same paths; results are written "
            "here, so they need no database access.",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Extract at most this many segments.")] = None,
    db: DbOption = None,
) -> None:
    """Compute the 1812 catalog features of every pending segment (docs/method.md, section 3).

    Each segment's values are written in one transaction with its status: interrupt or kill
    it at any moment and run it again to resume. A segment whose audio makes Essentia fail is
    recorded as failed with the error and the run goes on; the exit status is then 1. Segments
    of excluded pairs or multitracks (`stemstore exclude`) wait until included again.

    Example: `stemstore extract --workers 2`, or `stemstore extract --dask tcp://10.0.0.5:8786`
    """
    from stemstore.features.extraction import extract as run_extract

    with open_store(db) as store, progress_reporter("extracting") as progress:
        summary = run_extract(store, workers=workers, dask_address=dask, progress=progress, limit=limit)
    typer.echo(summary.describe())
    if summary.failed:
        raise typer.Exit(1)
