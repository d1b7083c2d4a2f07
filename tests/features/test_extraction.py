"""Feature extraction over segments: atomic per segment, resumable after kill -9, the same
values inline, in local processes and on a Dask cluster; non-finite handling for analysis.

Segments are 2 s long here (``window=2.0``) to keep the suite quick; the store-level tests run
on DuckDB and PostgreSQL, the heavy parallel ones on DuckDB only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from stemstore.cli.app import app
from stemstore.store.catalog import feature_names
from stemstore.analysis.matrix import analysis_matrix
from stemstore.features.extraction import count_outdated, extract
from stemstore.features import EXTRACTOR_VERSION
from stemstore.reports import status
from stemstore.segments import segment
from stemstore.store.connection import Store

from tests.support import build_corpus, noise, tone, with_burst

N_FEATURES = len(feature_names())
WINDOW = 2.0
runner = CliRunner()


def _corpus(store, root: Path, n_multitracks: int, stems_each: int = 1, seconds: float = 3.0) -> None:
    labels = ["electric bass", "male singer", "piano"]
    build_corpus(
        store,
        root,
        {
            f"MT{i}": [
                {
                    "code": f"S0{k}",
                    "instrument": labels[k],
                    "audio": with_burst(
                        noise(seconds, 0.02, 100 * i + k), 0.5, tone(2.0, 110.0 * (k + 1 + i), 0.3)
                    ),
                    "raws": [
                        {
                            "code": f"S0{k}/R01",
                            "audio": with_burst(
                                noise(seconds, 0.05, 100 * i + k + 50),
                                0.7,
                                tone(1.5, 110.0 * (k + 1 + i), 0.2),
                            ),
                        }
                    ],
                }
                for k in range(stems_each)
            ]
            for i in range(1, n_multitracks + 1)
        },
    )


def _values_per_segment(store) -> dict[int, int]:
    df = store.read_sql(
        "SELECT segment_id, COUNT(*) AS n, COUNT(DISTINCT feature_id) AS d "
        "FROM feature_values GROUP BY segment_id"
    )
    assert (df["n"] == df["d"]).all()  # never the same feature twice
    return dict(zip(df["segment_id"].astype(int), df["n"].astype(int)))


def _status(store) -> dict[int, str]:
    df = store.read_sql("SELECT id, status FROM segments ORDER BY id")
    return dict(zip(df["id"].astype(int), df["status"]))


def _long_values(store) -> np.ndarray:
    df = store.read_sql(
        "SELECT segment_id, feature_id, value FROM feature_values ORDER BY segment_id, feature_id"
    )
    return df.to_numpy(dtype=np.float64)


# -- the store level, both backends ----------------------------------------------------------------
def test_extract_writes_every_feature_and_records_failures(store, db_url, tmp_path):
    _corpus(store, tmp_path / "corpus", n_multitracks=3)
    assert segment(store, window=WINDOW).pairs == 3
    # After segmenting, one raw file is damaged: Essentia cannot decode it any more.
    broken = store.read_sql(
        "SELECT s.id, t.path FROM segments s JOIN tracks t ON t.id = s.track_id "
        "WHERE s.role = 'raw' ORDER BY s.id"
    ).iloc[0]
    (tmp_path / "corpus" / broken["path"]).write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")

    summary = extract(store)
    assert (summary.pending, summary.extracted, summary.failed) == (6, 5, 1)
    status = _status(store)
    assert status[int(broken["id"])] == "failed"
    reason = store.read_sql(f"SELECT reason FROM segments WHERE id = {int(broken['id'])}")["reason"][0]
    assert "decode" in reason or "Error" in reason
    counts = _values_per_segment(store)
    assert set(counts) == {i for i, s in status.items() if s == "extracted"}
    assert set(counts.values()) == {N_FEATURES}

    run = store.read_sql("SELECT status, params, counts, software FROM runs WHERE kind = 'extraction'").iloc[
        0
    ]
    assert run["status"] == "done"
    run_counts = json.loads(run["counts"])
    assert (run_counts["extracted"], run_counts["failed"]) == (5, 1)
    assert run_counts["non_finite_values"] == summary.non_finite
    assert "essentia" in json.loads(run["software"])

    # Nothing left: a second run does nothing (the failed segment stays failed).
    again = extract(store)
    assert again.pending == 0 and again.run_id is None

    # The CLI says what failed and exits non-zero when a segment failed.
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            f"UPDATE segments SET status = 'pending', reason = NULL WHERE id = {int(broken['id'])}"
        )
    result = runner.invoke(app, ["extract", "--db", db_url])
    assert result.exit_code == 1, result.output
    assert "1 failed" in result.output and f"segment {int(broken['id'])} failed" in result.output


def _versions(store) -> dict[int, str]:
    df = store.read_sql("SELECT segment_id, extractor_version FROM segment_extractions")
    return dict(zip(df["segment_id"].astype(int), df["extractor_version"]))


def _run_using(store, segment_ids) -> int:
    run_id = store.start_run("selection", group="bass", params={"test": True})
    with store.engine.begin() as conn:
        for segment_id in segment_ids:
            conn.execute(
                sa.text("INSERT INTO run_segments (run_id, segment_id) VALUES (:r, :s)"),
                {"r": run_id, "s": int(segment_id)},
            )
    store.finish_run(run_id)
    return run_id


def _stale_runs(store) -> set[int]:
    return set(store.read_sql("SELECT id FROM runs WHERE stale")["id"].astype(int))


def test_outdated_values_are_counted_recomputed_and_their_runs_marked_stale(store, tmp_path):
    _corpus(store, tmp_path / "corpus", n_multitracks=3)
    segment(store, window=WINDOW)
    extract(store)
    current = _long_values(store)
    ids = sorted(_status(store))
    assert set(_versions(store).values()) == {EXTRACTOR_VERSION} and set(_versions(store)) == set(ids)
    assert count_outdated(store) == 0

    # Values of an older extractor: two segments say version "1", one has no version at all
    # (extracted before versions were recorded). The old values differ from today's.
    old, unversioned = ids[:2], ids[2]
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                f"UPDATE segment_extractions SET extractor_version = '1' "
                f"WHERE segment_id IN ({old[0]}, {old[1]})"
            )
        )
        conn.execute(sa.text(f"DELETE FROM segment_extractions WHERE segment_id = {unversioned}"))
        conn.execute(
            sa.text(
                f"UPDATE feature_values SET value = -1.0 WHERE segment_id IN "
                f"({old[0]}, {old[1]}, {unversioned})"
            )
        )
    using_old = _run_using(store, [old[0], ids[3]])
    not_using = _run_using(store, ids[3:])
    assert count_outdated(store) == 3
    pending = status(store)["pending"].set_index("work")["count"]
    assert pending["outdated segments to re-extract (older extractor version)"] == 3

    # A failed recomputation keeps the old values: nothing is lost before it is replaced.
    broken = store.read_sql(
        f"SELECT t.path FROM segments s JOIN tracks t ON t.id = s.track_id WHERE s.id = {old[1]}"
    )["path"][0]
    saved = (tmp_path / "corpus" / broken).read_bytes()
    (tmp_path / "corpus" / broken).write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    summary = extract(store)
    assert (summary.outdated, summary.replaced, summary.failed, summary.stale_runs) == (3, 2, 1, 1)
    assert _status(store)[old[1]] == "extracted" and _versions(store)[old[1]] == "1"
    kept = store.read_sql(f"SELECT value FROM feature_values WHERE segment_id = {old[1]}")["value"]
    assert len(kept) == N_FEATURES and (kept == -1.0).all()
    assert _stale_runs(store) == {using_old}  # the run that used replaced values, not the other

    (tmp_path / "corpus" / broken).write_bytes(saved)
    summary = extract(store)
    assert (summary.outdated, summary.replaced, summary.failed) == (1, 1, 0)
    assert count_outdated(store) == 0 and set(_versions(store).values()) == {EXTRACTOR_VERSION}
    np.testing.assert_array_equal(_long_values(store), current)  # recomputed exactly
    assert not_using not in _stale_runs(store)
    assert extract(store).pending == 0


def test_migration_keeps_existing_values_and_marks_them_outdated(db_url, tmp_path):
    store = Store.open(db_url, create=True, check_schema=False)
    store.init()
    _corpus(store, tmp_path / "corpus", n_multitracks=2)
    segment(store, window=WINDOW)
    extract(store)
    values = _long_values(store)
    store.downgrade("0005")  # a store from before extractor versions ...
    store.upgrade()  # ... upgraded: its values are kept and known to be outdated
    np.testing.assert_array_equal(_long_values(store), values)
    assert set(_versions(store).values()) == {"1"} and count_outdated(store) == 4
    assert extract(store).replaced == 4 and count_outdated(store) == 0
    store.close()


def test_analysis_matrix_replaces_non_finite_values(store, tmp_path):
    _corpus(store, tmp_path / "corpus", n_multitracks=2)
    segment(store, window=WINDOW)
    extract(store)
    wide, n_replaced = analysis_matrix(store, instruments=["electric bass"])
    names = list(feature_names())
    assert list(wide.columns[-N_FEATURES:]) == names and len(wide) == 4
    assert np.isfinite(wide[names].to_numpy()).all()
    stored_non_finite = int(
        store.read_sql("SELECT counts FROM runs WHERE kind = 'extraction'")["counts"]
        .map(lambda c: json.loads(c)["non_finite_values"])
        .sum()
    )
    assert n_replaced == stored_non_finite

    # A NaN becomes the feature's mean over the segments, +inf its largest finite value.
    feature = store.features.iloc[10]
    ids = list(wide.index)
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            f"UPDATE feature_values SET value = 'NaN' WHERE segment_id = {ids[0]} "
            f"AND feature_id = {int(feature['id'])}"
        )
        conn.exec_driver_sql(
            f"UPDATE feature_values SET value = 'Infinity' WHERE segment_id = {ids[1]} "
            f"AND feature_id = {int(feature['id'])}"
        )
    cleaned, n_after = analysis_matrix(store, instruments=["electric bass"])
    assert n_after == n_replaced + 2
    column = wide[feature["name"]].to_numpy()
    assert cleaned[feature["name"]].iloc[0] == pytest.approx(np.mean(column[2:]))
    assert cleaned[feature["name"]].iloc[1] == pytest.approx(np.max(column[2:]))
    assert np.isfinite(cleaned[names].to_numpy()).all()


# -- end to end: synth -> ingest -> segment -> extract ---------------------------------------------
def test_synth_ingest_segment_extract(tmp_path):
    from stemstore.corpus.ingest import ingest
    from stemstore.synth.corpus import synthesize_corpus

    synthesize_corpus(tmp_path / "corpus", n_multitracks=2, seconds=4.0, seed=3, workers=1)
    with Store.open(str(tmp_path / "store.duckdb"), create=True, check_schema=False) as store:
        store.init()
        ingest(store, tmp_path / "corpus")
        made = segment(store, window=WINDOW)
        assert made.pairs > 0
        done = extract(store, workers=1)
        assert done.failed == 0 and done.extracted == 2 * made.pairs
        counts = _values_per_segment(store)
        assert len(counts) == 2 * made.pairs and set(counts.values()) == {N_FEATURES}
        pairs = store.read_sql(
            "SELECT pair, COUNT(*) AS n, MIN(role) AS r0, MAX(role) AS r1 FROM segments "
            "WHERE pair IS NOT NULL GROUP BY pair"
        )
        assert (pairs["n"] == 2).all() and set(pairs["r0"]) == {"raw"} and set(pairs["r1"]) == {"stem"}
        for group in ("bass", "guitar", "vocal", "keys"):
            wide, _ = analysis_matrix(store, group=group)
            assert np.isfinite(wide[list(feature_names())].to_numpy()).all()


# -- kill -9 and resume ----------------------------------------------------------------------------
def test_kill_9_during_extraction_then_resume(tmp_path):
    db = str(tmp_path / "store.duckdb")
    with Store.open(db, create=True, check_schema=False) as store:
        store.init()
        _corpus(store, tmp_path / "corpus", n_multitracks=4, stems_each=2)
        assert segment(store, window=WINDOW).pairs == 8
    n_segments = 16

    # Run the CLI, wait until it reports its first written segment, then kill it hard.
    process = subprocess.Popen(
        [sys.executable, "-m", "stemstore.cli.app", "extract", "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 120
        for line in process.stderr:
            if line.startswith("extracting: "):
                break
            assert time.monotonic() < deadline, "no progress from stemstore extract"
        else:
            pytest.fail(f"stemstore extract ended early: {process.wait()} {process.stdout.read()}")
        time.sleep(0.3)  # somewhere inside the next segment, perhaps inside its transaction
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    with Store.open(db) as store:
        status = _status(store)
        counts = _values_per_segment(store)
        done_before = {i for i, s in status.items() if s == "extracted"}
        assert 1 <= len(done_before) < n_segments
        assert set(counts) == done_before and set(counts.values()) == {N_FEATURES}  # no partial segment
        killed = store.read_sql("SELECT status FROM runs WHERE kind = 'extraction'")["status"]
        assert list(killed) == ["running"]  # it never finished

        resumed = extract(store)
        assert resumed.pending == n_segments - len(done_before) and resumed.failed == 0
        counts = _values_per_segment(store)
        assert len(counts) == n_segments and set(counts.values()) == {N_FEATURES}
        total = store.read_sql("SELECT COUNT(*) AS n FROM feature_values")["n"][0]
        assert total == n_segments * N_FEATURES


# -- parallel: the same values everywhere ------------------------------------------------------------
def test_workers_and_dask_give_the_same_values(tmp_path):
    from distributed import LocalCluster

    first = tmp_path / "inline.duckdb"
    with Store.open(str(first), create=True, check_schema=False) as store:
        store.init()
        _corpus(store, tmp_path / "corpus", n_multitracks=2, stems_each=2)
        segment(store, window=WINDOW)
    for name in ("processes.duckdb", "dask.duckdb"):
        shutil.copy(first, tmp_path / name)

    with Store.open(str(first)) as store:
        assert extract(store, workers=1).extracted == 8
        inline = _long_values(store)
    with Store.open(str(tmp_path / "processes.duckdb")) as store:
        summary = extract(store, workers=2)
        assert summary.extracted == 8
        params = json.loads(
            store.read_sql(f"SELECT params FROM runs WHERE id = {summary.run_id}")["params"][0]
        )
        assert params["mode"] == "processes" and params["workers"] == 2
        processes = _long_values(store)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Store.open(str(tmp_path / "dask.duckdb")) as store:
            summary = extract(store, dask_address=cluster.scheduler_address)
            assert summary.extracted == 8 and summary.failed == 0
            dask_values = _long_values(store)

    assert inline.shape == (8 * N_FEATURES, 3)
    np.testing.assert_array_equal(processes, inline)
    np.testing.assert_array_equal(dask_values, inline)
