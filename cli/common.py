"""What every command shares: the Typer app, common options, user-error handling.

A user error (StemstoreError) prints one line ``error: ...`` on stderr and exits 1.
"""

from __future__ import annotations

import errno
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


def features_option(help_text: str):
    """A ``--features`` option: names separated by commas, the option repeatable."""
    return Annotated[
        list[str] | None,
        typer.Option(
            "--features",
            metavar="NAMES",
            help=f"{help_text} Comma-separated, or repeat the option: --features a,b --features c.",
        ),
    ]


def feature_names(values: list[str] | None) -> list[str] | None:
    """The names given with every ``--features`` option, in order; None when none was given."""
    if values is None:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not names:
        raise StemstoreError("--features is empty: give feature names separated by commas")
    return names


def user_errors(fn):
    """Turn StemstoreError into one line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StemstoreError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except OSError as exc:
            message = describe_os_error(exc, kwargs.get("db"))
            if message is None:
                raise
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(1) from None
        except Exception as exc:  # the database's errors, translated when they are the world's
            message = describe_database_error(exc, kwargs.get("db"))
            if message is None:
                raise
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:
            typer.echo(f"interrupted: {str(exc) or 'nothing half-written was kept'}", err=True)
            raise typer.Exit(130) from None

    return wrapper


def open_store(db: str | None, **kwargs):
    """Open the store; unless read-only, as its writer: on PostgreSQL a second writer waits
    for the first (saying so on stderr)."""
    from stemstore.store.connection import Store

    kwargs.setdefault("writer", not kwargs.get("read_only", False))
    return Store.open(db, on_wait=lambda line: typer.echo(line, err=True), **kwargs)


def _store_shown(db: str | None) -> str:
    from stemstore.store.connection import parse_url, resolve_url

    try:
        return parse_url(resolve_url(db)).render_as_string(hide_password=True)
    except StemstoreError:
        return str(db)


def describe_os_error(exc: OSError, db: str | None) -> str | None:
    """One line for a full disk; None for other OS errors."""
    if exc.errno != errno.ENOSPC:
        return None
    return (
        f"no space left on device {exc.filename or ''} while writing the store {_store_shown(db)}; "
        "nothing partial was kept: free space and rerun the command"
    ).replace("device  ", "device ")


def describe_database_error(exc: BaseException, db: str | None) -> str | None:
    """One line for a lost server connection or a full disk under the database; None for
    anything else (a bug, shown as a traceback)."""
    import sqlalchemy as sa

    orig = getattr(exc, "orig", exc)
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    lowered = str(orig).lower()
    store = _store_shown(db)
    if "no space left on device" in lowered or getattr(orig, "sqlstate", None) == "53100":
        return (
            f"no space left on device for the store {store} ({text}); nothing partial was kept: "
            "free space and rerun the command"
        )
    lost = isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
    lost = lost or any(
        phrase in lowered
        for phrase in (
            "server closed the connection",
            "terminating connection",
            "connection refused",
            "consuming input failed",
            "the connection is closed",
            "connection is lost",
            "connection is bad",
            "is the server running",
            # a new connection while the server stops or restarts (SQLSTATE 57P01-57P03)
            "the database system is shutting down",
            "the database system is starting up",
            "the database system is in recovery mode",
        )
    )
    # The server's SQLSTATE says it in any language (its messages follow its lc_messages):
    # class 08, connection exception; 57P01-57P03, shutting down, crashed, not yet accepting.
    sqlstate = getattr(orig, "sqlstate", None) or ""
    lost = lost or sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")
    # psycopg's own errors reach here unwrapped from COPY on the raw connection
    driver_error = type(orig).__name__ in ("OperationalError", "InterfaceError")
    if lost and (isinstance(exc, sa.exc.DBAPIError) or driver_error):
        return (
            f"lost the connection to the database server of {store} ({text}); nothing partial "
            "was kept: rerun the command to continue"
        )
    return None
