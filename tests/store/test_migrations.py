"""Migrations: upgrade → downgrade → upgrade on both backends, and the head matches the models."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import stemstore.migrations.operations  # noqa: F401  (registers DuckDB for Alembic)
from stemstore.enums import (
    AudioStatus,
    CorpusFormat,
    Role,
    RunKind,
    RunStatus,
    SegmentStatus,
    Split,
    TrackKind,
)
from stemstore.store.schema import (
    SCHEMA_REVISION,
    Base,
    Corpus,
    Multitrack,
    Run,
    RunSegment,
    Segment,
    Track,
    TrackLink,
)
from stemstore.errors import StemstoreError
from stemstore.store.connection import Store, head_revisions
from stemstore.store.views import view_names


def tables(store: Store) -> set[str]:
    return set(sa.inspect(store.engine).get_table_names())


def test_history_is_linear_and_ends_at_the_models_revision():
    """One head: every migration builds on the one before, and the newest is the revision the
    models declare (a store at it opens without reading the migrations)."""
    assert head_revisions() == {SCHEMA_REVISION}


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


def test_a_store_behind_the_code_is_refused_with_the_way_to_upgrade_it(db_url):
    store = Store.open(db_url, create=True, check_schema=False)
    store.init()
    store.downgrade("0008")
    store.close()
    with pytest.raises(StemstoreError) as refused:
        Store.open(db_url)
    assert str(refused.value) == (
        f"the store's schema is at revision 0008, this stemstore needs {SCHEMA_REVISION}: "
        "run 'stemstore init' to upgrade it"
    )
    with Store.open(db_url, check_schema=False) as store:
        store.init()
    Store.open(db_url).close()


def test_opening_a_current_store_does_not_load_alembic(tmp_path):
    """Alembic is imported only to migrate or to explain a mismatch, so that every command
    opening an up-to-date store is spared its import."""
    db = tmp_path / "store.duckdb"
    with Store.open(str(db), create=True, check_schema=False) as store:
        store.init()
    code = (
        "import sys; from stemstore.store.connection import Store; "
        f"Store.open({str(db)!r}).close(); print(sorted(m for m in sys.modules if m.startswith('alembic')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


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


def _row_counts(store: Store) -> dict[str, int]:
    present = set(Base.metadata.tables) & tables(store)  # at an older revision, fewer tables
    return {
        table: int(store.read_sql(f"SELECT COUNT(*) AS n FROM {table}")["n"][0]) for table in sorted(present)
    }


def _add_rows(store: Store) -> None:
    """A corpus with one multitrack, a stem and a raw, a segment and a run: rows in the tables
    the enum checks constrain and in tables that reference them."""
    with store.session() as s:
        corpus = Corpus(name="c", root="/c", format=CorpusFormat.FOLDER)
        s.add(corpus)
        s.flush()
        multitrack = Multitrack(corpus_id=corpus.id, name="m")
        s.add(multitrack)
        s.flush()
        tracks = [
            Track(multitrack_id=multitrack.id, kind=kind, code=kind, audio_status=AudioStatus.PRESENT)
            for kind in (TrackKind.STEM, TrackKind.RAW)
        ]
        s.add_all(tracks)
        s.flush()
        s.add(TrackLink(stem_track_id=tracks[0].id, raw_track_id=tracks[1].id))
        segment = Segment(
            track_id=tracks[0].id, instrument_id=1, role=Role.STEM, status=SegmentStatus.PENDING
        )
        s.add(segment)
        s.flush()
        run = Run(kind=RunKind.SELECTION, status=RunStatus.DONE, group_name="bass")
        s.add(run)
        s.flush()
        s.add(RunSegment(run_id=run.id, segment_id=segment.id, split=Split.TRAIN))


def _add_corpus(store: Store, name: str, format: str) -> None:
    # an insert: DuckDB cannot update a row that another table references
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO corpora (name, format, created_at) VALUES (:name, :format, CURRENT_TIMESTAMP)"
            ),
            {"name": name, "format": format},
        )


def test_enum_checks_keep_rows_and_refuse_other_values(db_url):
    """Migration 0008 adds the enum CHECK constraints (on DuckDB by rebuilding every table) and
    its downgrade drops them; no row is lost either way."""
    store = Store.open(db_url, create=True, check_schema=False)
    store.init()
    _add_rows(store)
    before = _row_counts(store)
    with pytest.raises(sa.exc.DBAPIError, match="(?i)check"):
        _add_corpus(store, "bad", "bogus")

    store.downgrade("0007")
    assert _row_counts(store) == {t: n for t, n in before.items() if t != "exclusions"}
    for view in view_names():
        store.read_sql(f"SELECT * FROM {view} WHERE 1 = 0")  # views survive the rebuild
    _add_corpus(store, "bad", "bogus")  # no check before 0008
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM corpora WHERE name = 'bad'"))

    store.upgrade()
    assert _row_counts(store) == before
    with pytest.raises(sa.exc.DBAPIError, match="(?i)check"):
        _add_corpus(store, "bad", "bogus")
    _add_corpus(store, "good", CorpusFormat.MEDLEYDB)
    store.close()


def test_migration_checks_match_the_schema_enums():
    """The values migrations 0008 and 0009 froze are the enums' values today (a new value needs a
    migration)."""
    from stemstore.store.schema import ENUM_COLUMNS

    module = importlib.import_module("stemstore.migrations.versions.0008_enum_checks")
    frozen = {
        table: {name: (col, list(values)) for name, (col, values) in checks.items()}
        for table, checks in module.CHECKS.items()
    }
    frozen["exclusions"] = {"ck_exclusions_scope": ("scope", ["pair", "multitrack"])}  # created by 0009
    current = {
        table: {name: (col, enum.values()) for name, (col, enum) in checks.items()}
        for table, checks in ENUM_COLUMNS.items()
    }
    assert frozen == current
