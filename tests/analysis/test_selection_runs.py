"""Feature selection runs stored and reported, on both backends, from real reference values."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from stemstore.cli.app import app
from stemstore.store import bulk
from stemstore.errors import StemstoreError
from stemstore.reports import report
from stemstore.analysis.selection_runs import (
    latest_selection_run,
    select,
    selection_results,
    selection_summary,
)

from tests.support import REFERENCE, require_shared

TINY = dict(n_forests=3, n_trees=40, n_fits_interp=3, n_trees_interp=30, n_fits_pred=3, n_trees_pred=30)


@pytest.fixture
def bass_store(store):
    bulk.import_features(store, require_shared(REFERENCE / "bass-segments.csv"))
    return store


def test_selection_run_is_stored_and_reported(bass_store):
    run_id = select(bass_store, "bass", preset="fast", seed=3, **TINY)
    features, curves = selection_results(bass_store, run_id)
    assert len(features) == 4 and list(features["rank"]) == [1, 2, 3, 4]
    n_pred = int(features["in_fpred"].sum())
    assert n_pred >= 1
    # f_pred ⊆ f_p2 ⊆ f_p1
    assert (features["in_fp2"] <= features["in_fp1"]).all() and (
        features["in_fpred"] <= features["in_fp2"]
    ).all()
    assert set(curves["curve"]) == {"importance_sd", "cart", "interpretation", "prediction"}
    table4 = report(bass_store, "table4", groups=["bass"])
    assert table4[["f_p1", "f_p2", "f_pred"]].iloc[0].tolist() == [
        int(features["in_fp1"].sum()),
        int(features["in_fp2"].sum()),
        n_pred,
    ]
    table5 = report(bass_store, "table5", groups=["bass"])
    assert list(table5["position"]) == list(range(1, n_pred + 1))
    assert set(table5["statistic"]) <= {"max", "mean", "dvar2", ""}
    run = bass_store.read_sql("SELECT params, seed, software, status FROM runs WHERE id = :r", {"r": run_id})
    assert run["status"][0] == "done" and run["seed"][0] == 3
    assert '"n_trees": 40' in run["params"][0] and "scikit-learn" in run["software"][0]
    snapshot = bass_store.read_sql("SELECT COUNT(*) AS n FROM run_segments WHERE run_id = :r", {"r": run_id})
    assert snapshot["n"][0] == 136
    # the summary the CLI prints: the counts as the run record keeps them
    counts = bass_store.read_sql("SELECT counts FROM runs WHERE id = :r", {"r": run_id})["counts"][0]
    summary = selection_summary(bass_store, run_id)
    assert summary.describe() == f"selection run {run_id} for bass: {counts}"
    assert summary.counts["f_pred"] == n_pred
    assert summary.counts["raw_segments"] + summary.counts["stem_segments"] == 136
    with pytest.raises(StemstoreError, match="no selection run"):
        selection_summary(bass_store, run_id + 1000)


def test_same_seed_same_result_and_latest_run(bass_store):
    a = select(bass_store, "bass", preset="fast", seed=5, **TINY)
    b = select(bass_store, "bass", preset="fast", seed=5, **TINY)
    fa, ca = selection_results(bass_store, a)
    fb, cb = selection_results(bass_store, b)
    assert fa.equals(fb) and ca.equals(cb)
    assert latest_selection_run(bass_store, "bass") == b
    assert list(report(bass_store, "table4", groups=["bass"])["run_id"]) == [b]
    assert list(report(bass_store, "table4", run_id=a)["run_id"]) == [a]


def test_dask_run_selects_what_a_local_run_selects_and_records_the_cluster(bass_store):
    from distributed import LocalCluster

    local = select(bass_store, "bass", preset="fast", seed=5, n_jobs=1, **TINY)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        remote = select(
            bass_store, "bass", preset="fast", seed=5, dask_address=cluster.scheduler_address, **TINY
        )
    local_features, local_curves = selection_results(bass_store, local)
    remote_features, remote_curves = selection_results(bass_store, remote)
    assert local_features.equals(remote_features) and local_curves.equals(remote_curves)
    params = bass_store.read_sql("SELECT params FROM runs WHERE id = :r", {"r": remote})["params"][0]
    assert '"parallel": "dask"' in params and cluster.scheduler_address in params
    with pytest.raises(StemstoreError, match="cannot connect to the Dask scheduler at tcp://127.0.0.1:9"):
        select(bass_store, "bass", dask_address="tcp://127.0.0.1:9", **TINY)


def test_too_few_segments_and_no_features(store, tmp_path):
    small = tmp_path / "small.csv"
    rows = ["multitrack,instrument,role,lowLevel.hfc.mean"] + [
        f"m{i},electric bass,{role},{i + (role == 'stem')}" for i in range(6) for role in ("raw", "stem")
    ]
    small.write_text("\n".join(rows) + "\n")
    bulk.import_features(store, small)
    with pytest.raises(StemstoreError, match="6 raw and 6 stem segments; selection needs at least 10"):
        select(store, "bass", **TINY)
    with pytest.raises(StemstoreError, match="no extracted features"):
        select(store, "keys", **TINY)
    with pytest.raises(StemstoreError, match="no finished selection run"):
        latest_selection_run(store, "keys")


def test_cli_select_and_figures(bass_store, tmp_path):
    runner = CliRunner()
    db = bass_store.url
    result = runner.invoke(
        app,
        [
            "select",
            "--group",
            "bass",
            "--trees",
            "40",
            "--forests",
            "3",
            "--max-interp-features",
            "2",
            "--db",
            db,
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    params = bass_store.read_sql("SELECT params FROM runs ORDER BY id DESC LIMIT 1")["params"][0]
    assert '"max_interp_features": 2' in params and '"parallel": "local"' in params
    for kind in ("importance", "oob"):
        out = tmp_path / f"{kind}.png"
        result = runner.invoke(
            app, ["plot", kind, "--group", "bass", "-o", str(out), "--db", db], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    result = runner.invoke(
        app, ["plot", "oob", "--group", "vocal", "-o", str(tmp_path / "x.png"), "--db", db]
    )
    assert result.exit_code == 1 and "no finished selection run" in result.output
