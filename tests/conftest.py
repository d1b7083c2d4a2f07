"""Fixtures: every store test runs on a DuckDB file and on a real PostgreSQL server.

Some tests read the project's shared data folder, ``../shared`` beside the checkout (the
MedleyDB metadata, the feature catalog and the reference study's feature values; see
docs/method.md, sections 1, 3 and 7). They reach it only through :func:`require_shared`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from stemstore.store.connection import Store

from .pgcluster import PostgresCluster

SHARED = Path(__file__).resolve().parents[2] / "shared"  # beside the checkout, here and in CI
REFERENCE = SHARED / "data" / "aes143-reference"
MEDLEYDB_METADATA = SHARED / "data" / "medleydb-metadata"
GROUPS = ["bass", "guitar", "vocal", "keys"]


def require_shared(path: Path | str = SHARED) -> Path:
    """``path`` (under ../shared) if it exists; otherwise skip the test, or fail it on CI.

    On a developer's machine without the shared folder the test is skipped. When the
    environment variable CI is "true" a missing file fails the test instead, so CI cannot
    pass by silently skipping the tests on real data.
    """
    path = Path(path)
    if path.exists():
        return path
    message = (
        f"shared data not found: {path} (the shared folder is expected at {SHARED}, beside the repository)"
    )
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{message}; CI=true, so this fails instead of skipping", pytrace=False)
    pytest.skip(message)


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
