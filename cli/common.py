"""What every command shares: the Typer app, common options, user-error handling.

A user error (StemstoreError) prints one line ``error: ...`` on stderr and exits 1.
"""

from __future__ import annotations

import functools
from typing import Annotated

import typer

from stemstore.errors import StemstoreError

from .render import Format

app = typer.Typer(
    name="stemstore",
    help="A dataset and feature store for research on how mixing engineers turn raw "
    "multitrack recordings into processed stems.\n\n"
    "The store is ./stemstore.duckdb unless --db or $STEMSTORE_DB name another "
    "(a DuckDB path or any SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)


@app.callback()
def options(
    raw_csv: Annotated[
        bool,
        typer.Option(
            "--raw-csv",
            help="Write CSV text cells as they are. By default a cell that a spreadsheet would "
            "run as a formula (starting with =, +, -, @) is prefixed with ' (numbers stay numbers).",
        ),
    ] = False,
) -> None:
    """Options for every command."""
    from .render import RAW_CSV

    RAW_CSV["on"] = raw_csv


groups_app = typer.Typer(help="Named instrument groups that analyses run on.", no_args_is_help=True)
export_app = typer.Typer(help="Write stored data to files.", no_args_is_help=True)
plot_app = typer.Typer(help="The study's figures as PNG files.", no_args_is_help=True)
app.add_typer(groups_app, name="groups")
app.add_typer(export_app, name="export")
app.add_typer(plot_app, name="plot")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="STEMSTORE_DB",
        show_envvar=True,
        help="Store: a DuckDB file path or a SQLAlchemy URL. Default ./stemstore.duckdb.",
    ),
]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
GroupName = Annotated[str, typer.Option("--group", "-g", help="Instrument group, e.g. bass.")]
GroupOption = Annotated[
    list[str] | None, typer.Option("--group", "-g", help="Instrument group (repeatable).")
]
InstrumentOption = Annotated[
    list[str] | None, typer.Option("--instrument", "-i", help="Instrument label (repeatable).")
]


def user_errors(fn):
    """Turn StemstoreError into one line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StemstoreError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:
            typer.echo(f"interrupted: {str(exc) or 'nothing half-written was kept'}", err=True)
            raise typer.Exit(130) from None

    return wrapper


def open_store(db: str | None, **kwargs):
    from stemstore.store.connection import Store

    return Store.open(db, **kwargs)
