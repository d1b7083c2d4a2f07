"""Commands on the store itself: init, groups, import/export of features, query, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stemstore.errors import StemstoreError

from .common import (
    DbOption,
    FormatOption,
    GroupOption,
    InstrumentOption,
    app,
    export_app,
    feature_names,
    features_option,
    groups_app,
    open_store,
    user_errors,
)
from .render import RAW_CSV, Format, render, render_batches


# -- the store -------------------------------------------------------------------------------
@app.command()
@user_errors
def init(db: DbOption = None) -> None:
    """Create the store, or upgrade its schema to this version; add the default groups.

    Example: `stemstore init` (./stemstore.duckdb), or
    `stemstore init --db postgresql+psycopg://me@localhost/stems`.
    """
    with open_store(db, create=True, check_schema=False) as store:
        before = store.schema_revision()
        added = store.init()
        after = store.schema_revision()
        state = "created" if before is None else ("upgraded" if before != after else "up to date")
        typer.echo(
            f"store {store.label}: schema {after} ({state}); "
            f"{added['features']} catalog features and {added['groups']} groups added"
        )
        if added.get("reader"):
            typer.echo(added["reader"])


@groups_app.command("list")
@user_errors
def groups_list(db: DbOption = None, fmt: FormatOption = Format.table) -> None:
    """List the instrument groups and their instruments.

    Example: `stemstore groups list`
    """
    with open_store(db, writer=False) as store:
        render(store.groups(), fmt)


@groups_app.command("set")
@user_errors
def groups_set(
    name: Annotated[str, typer.Argument(help="Group name.")],
    instruments: Annotated[list[str], typer.Argument(help="Instrument labels (MedleyDB taxonomy).")],
    db: DbOption = None,
) -> None:
    """Create a group or replace its instruments.

    Example: `stemstore groups set my-guitars "acoustic guitar" banjo`
    """
    with open_store(db) as store:
        store.set_group(name, instruments)
        typer.echo(f"group {name}: {', '.join(instruments)}")


@groups_app.command("delete")
@user_errors
def groups_delete(name: Annotated[str, typer.Argument(help="Group name.")], db: DbOption = None) -> None:
    """Delete a group (its instruments and data stay).

    Example: `stemstore groups delete my-guitars`
    """
    with open_store(db) as store:
        store.delete_group(name)
        typer.echo(f"group {name} deleted")


@app.command("import-features")
@user_errors
def import_features(
    file: Annotated[Path, typer.Argument(help="Wide CSV or Parquet file.")],
    db: DbOption = None,
) -> None:
    """Import wide feature values: columns multitrack, instrument, role (raw|stem), optional
    pair and split (train|test), then feature columns named as in the catalog.

    One transaction: a file with any problem changes nothing. Importing the same file again
    changes nothing.

    Example: `stemstore import-features bass-pairs.csv`
    """
    from stemstore.store.bulk import import_features as run_import

    with open_store(db) as store:
        typer.echo(run_import(store, file).describe())


@export_app.command("features")
@user_errors
def export_features(
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .csv or .parquet file.")],
    group: Annotated[str | None, typer.Option("--group", "-g", help="Instrument group.")] = None,
    instrument: InstrumentOption = None,
    features: features_option("Feature names (default: all).") = None,
    db: DbOption = None,
) -> None:
    """Export segments' features wide, in the format import-features reads (bit-exact).

    Example: `stemstore export features --group bass -o bass.parquet`
    """
    from stemstore.store.bulk import META_COLUMNS, export_features as run_export

    if group is None and not instrument:
        raise StemstoreError("say what to export: --group G or --instrument I")
    names = feature_names(features)
    with open_store(db, writer=False) as store:
        out = run_export(
            store, output, group=group, instruments=instrument, features=names, raw_csv=RAW_CSV["on"]
        )
        n_features = len([c for c in out.columns if c not in META_COLUMNS])
        typer.echo(f"wrote {len(out)} segments × {n_features} features to {output}")


@app.command()
@user_errors
def query(
    sql: Annotated[str, typer.Argument(help="One read-only SQL statement.")],
    db: DbOption = None,
    fmt: FormatOption = Format.table,
    limit: Annotated[
        int, typer.Option(min=0, help="Show at most this many rows (0: all of them).")
    ] = 1000,  # stemstore.reports.DEFAULT_LIMIT, not imported so that the CLI starts fast
    timeout: Annotated[
        float, typer.Option(min=0, help="Stop the query after this many seconds (0: never).")
    ] = 30.0,  # stemstore.reports.DEFAULT_TIMEOUT
) -> None:
    """Run a read-only SQL query over the store's tables and views.

    Anything but a read is refused, by the parser and by the database: DuckDB opens the file
    read-only without access to other files, the network or extensions; PostgreSQL runs the
    query in a read-only transaction as the store's read-only role (made by `stemstore init`).
    Rows stream: csv and json are written as they arrive. Ctrl-C stops the query.

    Example: `stemstore query "SELECT * FROM table2 WHERE group_name = 'vocal'" --limit 0`
    """
    from stemstore.reports import check_read_only, stream_query
    from stemstore.store.connection import resolve_url

    if resolve_url(db).startswith("duckdb:"):
        check_read_only(sql, "duckdb")  # refuse writes before even opening the file
    with open_store(db, read_only=True) as store:
        with stream_query(store, sql, limit=limit, timeout=timeout or None) as stream:
            render_batches(stream.columns, stream.frames(), fmt)
    if stream.truncated:
        typer.echo(f"(the first {limit} rows; --limit 0 shows all of them)", err=True)


@app.command()
@user_errors
def report(
    name: Annotated[str, typer.Argument(help="Report (a view of queries/), e.g. table2.")],
    group: GroupOption = None,
    instrument: InstrumentOption = None,
    run: Annotated[int | None, typer.Option(help="A run id (default: each group's latest run).")] = None,
    db: DbOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Render a report for any instrument subset.

    Example: `stemstore report table2 --group vocal --format markdown`
    """
    from stemstore.reports import report as run_report
    from stemstore.store.views import report_title

    with open_store(db, writer=False) as store:
        render(
            run_report(store, name, groups=group, instruments=instrument, run_id=run),
            fmt,
            title=report_title(name),
        )
