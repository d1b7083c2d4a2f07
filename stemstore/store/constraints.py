"""CHECK constraints added or dropped by a migration, on PostgreSQL and on DuckDB.

PostgreSQL alters the table in place. DuckDB cannot add or drop a CHECK constraint with
``ALTER TABLE``, nor drop a table that another table references, so there every table of the
store is rebuilt: copied aside, dropped (referencing tables first), created again from its own
``CREATE TABLE`` statement with the constraints edited in or out, and refilled (referenced
tables first). Views are dropped before and created again after, unchanged. All of it runs in
the migration's transaction: a failure leaves the store as it was.

A migration names its constraints with the values frozen in it, e.g.::

    CHECKS = {"tracks": {"ck_tracks_kind": ("kind", ["mix", "stem", "raw"])}}

    def upgrade():
        add_checks(op.get_bind(), CHECKS)

    def downgrade():
        drop_checks(op.get_bind(), CHECKS)
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

#: table -> {constraint name: (column, allowed values)}
Checks = dict[str, dict[str, tuple[str, list[str]]]]


def check_expression(column: str, values: list[str]) -> str:
    """``column IN ('a', 'b')``: NULL passes a CHECK, so a nullable column stays nullable."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def add_checks(conn: sa.Connection, checks: Checks) -> None:
    """Add the CHECK constraints ``checks``; existing rows must already satisfy them."""
    if conn.dialect.name == "postgresql":
        for table, named in checks.items():
            for name, (column, values) in named.items():
                conn.exec_driver_sql(
                    f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({check_expression(column, values)})"
                )
        return

    def add(table: str, create: str) -> str:
        extra = "".join(
            f", CHECK(({check_expression(column, values)}))"
            for column, values in checks.get(table, {}).values()
        )
        body = create.rstrip().rstrip(";").rstrip()
        return body[:-1] + extra + ")" if extra else create

    _rebuild_duckdb(conn, add)


def drop_checks(conn: sa.Connection, checks: Checks) -> None:
    """Drop the CHECK constraints ``checks``."""
    if conn.dialect.name == "postgresql":
        for table, named in checks.items():
            for name in named:
                conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        return
    # DuckDB keeps no constraint names: a constraint is found by its column's IN list
    texts: dict[str, list[str]] = {}
    for table, text, expression in conn.exec_driver_sql(
        "SELECT table_name, constraint_text, expression FROM duckdb_constraints() "
        "WHERE constraint_type = 'CHECK' AND schema_name = 'main'"
    ):
        columns = {column for column, _ in checks.get(table, {}).values()}
        if any(expression.startswith(f"({column} IN (") for column in columns):
            texts.setdefault(table, []).append(text)

    def drop(table: str, create: str) -> str:
        for text in texts.get(table, []):
            create = create.replace(f", {text}", "")
        return create

    _rebuild_duckdb(conn, drop)


def _rebuild_duckdb(conn: sa.Connection, edit: Callable[[str, str], str]) -> None:
    tables = dict(
        conn.exec_driver_sql(
            "SELECT table_name, sql FROM duckdb_tables() "
            "WHERE schema_name = 'main' AND NOT temporary AND table_name <> 'alembic_version'"
        ).all()
    )
    references: dict[str, set[str]] = {name: set() for name in tables}
    for table, referenced in conn.exec_driver_sql(
        "SELECT table_name, referenced_table FROM duckdb_constraints() "
        "WHERE constraint_type = 'FOREIGN KEY' AND schema_name = 'main'"
    ):
        if table in references and referenced != table:
            references[table].add(referenced)
    order = _referenced_first(references)
    views = conn.exec_driver_sql(
        "SELECT view_name, sql FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal"
    ).all()
    indexes = conn.exec_driver_sql(
        "SELECT sql FROM duckdb_indexes() WHERE schema_name = 'main' AND sql IS NOT NULL"
    ).all()

    for name, _ in views:
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name} CASCADE")
    for name in order:
        conn.exec_driver_sql(f"CREATE TABLE _rebuild_{name} AS SELECT * FROM {name}")
    for name in reversed(order):
        conn.exec_driver_sql(f"DROP TABLE {name}")
    for name in order:
        conn.exec_driver_sql(edit(name, tables[name]))
        conn.exec_driver_sql(f"INSERT INTO {name} SELECT * FROM _rebuild_{name}")
        conn.exec_driver_sql(f"DROP TABLE _rebuild_{name}")
    for (sql,) in indexes:
        conn.exec_driver_sql(sql)
    _create_views(conn, dict(views))


def _referenced_first(references: dict[str, set[str]]) -> list[str]:
    order: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        done.add(name)
        for referenced in sorted(references[name]):
            visit(referenced)
        order.append(name)

    for name in sorted(references):
        visit(name)
    return order


def _create_views(conn: sa.Connection, views: dict[str, str]) -> None:
    """Create views in an order that works: a view that reads another waits for it."""
    pending = dict(views)
    while pending:
        created = []
        for name, sql in pending.items():
            if not any(other in sql for other in pending if other != name):
                conn.exec_driver_sql(sql)
                created.append(name)
        if not created:  # cannot happen for views that were valid before
            raise RuntimeError(f"views depend on each other in a cycle: {sorted(pending)}")
        for name in created:
            del pending[name]
