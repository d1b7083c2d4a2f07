"""Curation: `exclude`, `include`, `exclusions`, and `serve`, the corpus in the browser."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import DbOption, FormatOption, app, open_store, user_errors
from .render import Format, render

PairOption = Annotated[
    str | None,
    typer.Option("--pair", "-p", help='Segment pair: MULTITRACK/INSTRUMENT, e.g. "Song03/electric bass".'),
]
MultitrackOption = Annotated[str | None, typer.Option("--multitrack", "-m", help="A whole multitrack.")]
SegmentOption = Annotated[int | None, typer.Option("--segment", "-s", help="A segment id (names its pair).")]
ByOption = Annotated[
    str | None,
    typer.Option("--by", envvar="STEMSTORE_USER", help="Who decides (default: the login name)."),
]


@app.command()
@user_errors
def exclude(
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why: kept with the decision.")],
    pair: PairOption = None,
    multitrack: MultitrackOption = None,
    segment: SegmentOption = None,
    by: ByOption = None,
    db: DbOption = None,
) -> None:
    """Leave a segment pair or a whole multitrack out of segment, extract, select, regress and study.

    Name exactly one of --pair, --multitrack, --segment. Runs record the exclusions they applied.

    Examples:

    `stemstore exclude --pair "Song03/electric bass" --reason "raw is another take"`

    `stemstore exclude --multitrack Song07 --reason "stems bounced with the mix bus"`
    """
    from stemstore.curation import exclude as run_exclude

    with open_store(db) as store:
        record = run_exclude(
            store, reason=reason, pair=pair, multitrack=multitrack, segment_id=segment, by=by
        )
    typer.echo(record.describe())


@app.command()
@user_errors
def include(
    exclusion: Annotated[
        int | None, typer.Argument(help="Exclusion id (see `stemstore exclusions`).", show_default=False)
    ] = None,
    pair: PairOption = None,
    multitrack: MultitrackOption = None,
    segment: SegmentOption = None,
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why it is back in.")] = None,
    by: ByOption = None,
    db: DbOption = None,
) -> None:
    """Reverse an exclusion: the pair or multitrack is analysed again (the decision stays listed).

    Examples:

    `stemstore include 3 --reason "checked: right raw"`

    `stemstore include --pair "Song03/electric bass"`
    """
    from stemstore.curation import find_active
    from stemstore.curation import include as run_include
    from stemstore.errors import StemstoreError

    with open_store(db) as store:
        if exclusion is None:
            if pair is None and multitrack is None and segment is None:
                raise StemstoreError("name an exclusion id, or one of --pair, --multitrack, --segment")
            exclusion = find_active(store, pair=pair, multitrack=multitrack, segment_id=segment)
        record = run_include(store, exclusion, reason=reason, by=by)
    typer.echo(record.describe())


@app.command()
@user_errors
def exclusions(
    active: Annotated[bool, typer.Option("--active", help="Only exclusions in force.")] = False,
    fmt: FormatOption = Format.table,
    db: DbOption = None,
) -> None:
    """List every exclusion: what, why, who and when, and whether it was reversed.

    Examples:

    `stemstore exclusions`

    `stemstore exclusions --active --format csv > exclusions.csv`
    """
    from stemstore.curation import list_exclusions

    with open_store(db, writer=False) as store:
        frame = list_exclusions(store, active_only=active)
    for column in ("excluded_at", "included_at"):  # readable in every format, JSON included
        frame[column] = [None if t is None or t != t else f"{t:%Y-%m-%d %H:%M:%S}" for t in frame[column]]
    render(frame, fmt, title="Exclusions")


@app.command()
@user_errors
def serve(
    host: Annotated[
        str, typer.Option(help="Address to bind: loopback unless you mean to share it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    db: DbOption = None,
) -> None:
    """Curate the corpus in a browser: listen to pairs, exclude or include them, read the
    study's tables and figures, query the store read-only.

    Examples:

    `stemstore serve`  (then open http://127.0.0.1:8000/)

    `stemstore serve --db demo-output/stemstore.duckdb --port 8080`
    """
    from stemstore.web.app import serve as run_serve

    run_serve(db, host=host, port=port, say=lambda msg: typer.echo(msg, err=True))
