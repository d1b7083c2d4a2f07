"""Fixtures: every store test runs on a DuckDB file and on a real PostgreSQL server.

Constants and helpers that test modules share are in :mod:`tests.support`.
"""

from __future__ import annotations

import uuid

import pytest

from stemstore.store.connection import Store

from tests.pgcluster import PostgresCluster


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["duckdb", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A URL of a new, empty database on each backend."""
    if request.param == "duckdb":
        return str(tmp_path / "store.duckdb")
    cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(db_url) -> Store:
    """An initialised store (head schema, catalog, default groups) on each backend."""
    s = Store.open(db_url, create=True, check_schema=False)
    s.init()
    yield s
    s.close()
