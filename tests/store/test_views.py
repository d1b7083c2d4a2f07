"""Views: a store at head has exactly the views of queries/, and every migration builds the
view as frozen in it (not as the file is now), on both backends."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from stemstore.store.connection import Store
from stemstore.migrations.operations import View
from stemstore.store.views import view_names, view_sql

PROBE = "probe_view"

# The database itself normalises both sides: each SELECT is built as a view and its catalog
# definition (DuckDB: duckdb_views().sql, PostgreSQL: pg_get_viewdef) is what is compared.
# Both render the parsed query, so comments, whitespace, layout and keyword case in
# queries/*.sql never matter, while any change to the query itself does. Stripping `--`
# comments from the text instead would trip on layout and on `--` inside string literals.


def definition(conn: sa.Connection, name: str) -> str:
    """The view ``name``'s SELECT as the database renders it."""
    if conn.dialect.name == "duckdb":
        sql = conn.execute(
            sa.text("SELECT sql FROM duckdb_views() WHERE view_name = :name"), {"name": name}
        ).scalar_one()
        return re.sub(r"^CREATE (TEMP |TEMPORARY )?VIEW \S+ AS ", "", sql)
    return conn.execute(
        sa.text("SELECT pg_get_viewdef(CAST(:name AS regclass), true)"), {"name": name}
    ).scalar_one()


def rendered(store: Store, sqltext: str) -> str:
    """``sqltext`` as the database renders a view of it (built and rolled back)."""
    with store.engine.connect() as conn, conn.begin() as tx:
        conn.execute(sa.text(f"CREATE VIEW {PROBE} AS\n{sqltext}".replace(":", "\\:")))
        out = definition(conn, PROBE)
        tx.rollback()
    return out


def installed(store: Store) -> dict[str, str]:
    """Every view of the store and its definition."""
    with store.engine.connect() as conn:
        return {name: definition(conn, name) for name in sa.inspect(conn).get_view_names()}


SCRIPT = ScriptDirectory(str(resources.files("stemstore.migrations")))


def frozen(revision: str) -> dict[str, View]:
    """The View constants the migration ``revision`` freezes, by view name."""
    module = SCRIPT.get_revision(revision).module
    return {v.name: v for v in vars(module).values() if isinstance(v, View)}


def expected_at(revision: str) -> dict[str, View]:
    """Per view name, its newest frozen version at ``revision`` (migrations run oldest first)."""
    views: dict[str, View] = {}
    for script in reversed(list(SCRIPT.walk_revisions("base", revision))):
        views.update(frozen(script.revision))
    return views


@pytest.fixture
def store_at_head(db_url):
    store = Store.open(db_url, create=True, check_schema=False)
    store.upgrade()
    yield store
    store.close()


def assert_head_views_are_the_files(store: Store) -> None:
    views = installed(store)
    assert set(views) == set(view_names())
    for name in view_names():
        assert views[name] == rendered(store, view_sql(name)), name


def test_head_views_are_the_query_files(store_at_head):
    assert_head_views_are_the_files(store_at_head)


def test_each_revision_has_its_frozen_views(store_at_head):
    """Down one step at a time to base: every view present is the newest version frozen at or
    before the store's revision; then back up to head, which is the files again."""
    store = store_at_head
    while (revision := store.schema_revision()) is not None:
        expected = expected_at(revision)
        for name, sql in installed(store).items():
            assert sql == rendered(store, expected[name].sqltext), (revision, name)
        store.downgrade("-1")
    assert installed(store) == {}
    store.upgrade()
    assert_head_views_are_the_files(store)


def test_downgrade_restores_the_earlier_table2(store_at_head):
    """0003 changed table2; going back to 0002 brings back 0002's table2, not today's file."""
    store = store_at_head
    store.downgrade("0002")
    views = installed(store)
    assert set(views) == {"group_labels", "table2", "segments_status"}
    assert views["table2"] == rendered(store, frozen("0002")["table2"].sqltext)
    assert views["table2"] != rendered(store, view_sql("table2"))
    store.upgrade("0003")
    assert installed(store)["table2"] == rendered(store, frozen("0003")["table2"].sqltext)
