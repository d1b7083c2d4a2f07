"""Reports and read-only SQL: the views of ``queries/`` rendered for instrument subsets.

A report is a view filtered by ``group_name`` and ``instrument`` when the view has those
columns. ``query`` runs any read the user writes, and nothing else.
"""

from __future__ import annotations

import sqlalchemy as sa
import pandas as pd
import sqlglot
from sqlglot import exp

from .errors import StemstoreError
from .store import Store
from .views import report_order, view_names

#: Statement types that only read. Anything else, anywhere in the tree, is refused.
_WRITES = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Command,
    exp.Copy,
    exp.Set,
    exp.TruncateTable,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Use,
    exp.Pragma,
    exp.Attach,
    exp.Detach,
    exp.Grant,
)


def check_read_only(sql: str, dialect: str) -> None:
    """Refuse anything but one reading statement, by parsing it (not by matching strings)."""
    try:
        statements = [
            s for s in sqlglot.parse(sql, read="postgres" if dialect == "postgresql" else dialect) if s
        ]
    except sqlglot.errors.ParseError as exc:
        first = str(exc).splitlines()[0]
        raise StemstoreError(f"cannot parse the query: {first}") from exc
    if len(statements) != 1:
        raise StemstoreError(f"give exactly one statement (found {len(statements)})")
    statement = statements[0]
    if not isinstance(statement, (exp.Query, exp.Describe, exp.Show)):
        raise StemstoreError(f"refused: query only reads, and this is a {statement.key.upper()} statement")
    for node in statement.walk():
        if isinstance(node, _WRITES):
            raise StemstoreError(f"refused: query only reads, and this statement contains {node.key.upper()}")


def query(store: Store, sql: str) -> pd.DataFrame:
    """Run one read-only statement. Parsed first; then run in a read-only transaction on
    PostgreSQL (DuckDB: the CLI also opens the file read-only)."""
    check_read_only(sql, store.dialect)
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        try:
            result = conn.exec_driver_sql(sql)
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        except sa.exc.DBAPIError as exc:
            raise StemstoreError(f"the database refused the query: {_first_line(exc.orig)}") from exc
        finally:
            conn.rollback()
    return frame


def report_names() -> list[str]:
    return view_names()


def report(
    store: Store,
    name: str,
    *,
    groups: list[str] | None = None,
    instruments: list[str] | None = None,
    run_id: int | None = None,
) -> pd.DataFrame:
    """Rows of view ``name`` for the given groups and/or instruments (all rows if neither).

    Views of run results have a ``run_id`` column and an ``is_latest`` flag: by default a
    report shows each group's latest run, or the run ``run_id``.
    """
    if name not in report_names():
        raise StemstoreError(f"unknown report {name!r} (reports: {', '.join(report_names())})")
    frame = store.read_sql(f"SELECT * FROM {name}")
    if groups:
        for g in groups:
            store.group_instruments(g)  # an unknown group is an error, not an empty table
        if "group_name" not in frame.columns:
            raise StemstoreError(f"report {name} has no groups to choose from")
        frame = frame[frame["group_name"].isin(groups)]
    if instruments:
        if "instrument" not in frame.columns:
            raise StemstoreError(f"report {name} has no instruments to choose from")
        frame = frame[frame["instrument"].isin(instruments)]
    if "run_id" in frame.columns:
        if run_id is not None:
            frame = frame[frame["run_id"] == run_id]
            if frame.empty:
                raise StemstoreError(f"report {name}: no rows for run {run_id}")
        elif "is_latest" in frame.columns:
            frame = frame[frame["is_latest"].astype(bool)]
        frame = frame.drop(columns=[c for c in ("is_latest",) if c in frame.columns])
    order = [c for c in report_order(name) if c in frame.columns]
    if order:
        frame = frame.sort_values(order, na_position="last", kind="stable")
    return frame.reset_index(drop=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
