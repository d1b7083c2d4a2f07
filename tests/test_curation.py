"""Exclusions (issue 14): exclude and include pairs and multitracks, list and export them, and
segment / regress leave out what is excluded and record it. Both backends."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from stemstore import curation
from stemstore.analysis.regression_runs import paired_matrix, regress
from stemstore.cli.app import app
from stemstore.errors import StemstoreError
from stemstore.segments import segment
from stemstore.store.bulk import import_features

from tests.support import build_corpus, noise, tone, with_burst

FEATURES = ["lowLevel.spectral_centroid.mean", "lowLevel.spectral_flux.mean"]
SMALL_GRIDS = {
    "svr": {"kernel": ["rbf"], "C": [1.0], "gamma": ["scale"], "epsilon": [0.1]},
    "rf": {"n_estimators": [10], "max_features": [1.0]},
    "knn": {"n_neighbors": [3]},
    "pls": {"n_components": [1]},
    "lr": {},
}


def _pairs_csv(path, n_pairs: int = 14):
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n_pairs):
        raw = rng.uniform(1.0, 2.0, size=len(FEATURES))
        stem = 0.8 * raw + 0.1 + rng.normal(0, 0.01, size=len(FEATURES))
        for role, values in (("raw", raw), ("stem", stem)):
            rows.append(
                {
                    "multitrack": f"mt{k:03d}",
                    "instrument": "electric bass",
                    "role": role,
                    "pair": f"bass-p{k:03d}",
                    "split": "test" if k % 5 == 0 else "train",
                    **dict(zip(FEATURES, values)),
                }
            )
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _bass_multitracks(store, tmp_path, seconds: float, count: int) -> None:
    """Multitracks MT1..MT<count>, each one electric-bass stem (noise with a tone burst) and
    its raw."""
    build_corpus(
        store,
        tmp_path,
        {
            f"MT{i}": [
                {
                    "code": "S01",
                    "instrument": "electric bass",
                    "audio": with_burst(noise(seconds, seed=i), seconds / 4, tone(seconds / 2)),
                    "raws": [{"code": "S01/R01", "audio": noise(seconds, 0.1, 10 + i)}],
                }
            ]
            for i in range(1, count + 1)
        },
    )


def test_exclude_include_list_and_regress_honours_them(store, tmp_path):
    import_features(store, _pairs_csv(tmp_path / "pairs.csv"))
    everyone = paired_matrix(store, "bass", FEATURES)
    assert len(everyone) == 28 and everyone.attrs["exclusions"] == []

    pair = curation.exclude(store, pair="bass-p001", reason="raw is another take", by="ana")
    whole = curation.exclude(store, multitrack="mt002", reason="bounced with the bus")
    assert pair.active and pair.scope == "pair" and whole.scope == "multitrack"
    left_out, applied = curation.excluded_segments(store)
    assert len(left_out) == 4 and applied == sorted([pair.id, whole.id])

    kept = paired_matrix(store, "bass", FEATURES)
    assert len(kept) == 24 and not kept["pair"].isin(["bass-p001", "bass-p002"]).any()
    run_id = regress(store, "bass", features=FEATURES, outliers="none", grids=SMALL_GRIDS, n_jobs=1)
    params = json.loads(store.read_sql("SELECT params FROM runs WHERE id = :r", {"r": run_id})["params"][0])
    assert params["exclusions"] == sorted([pair.id, whole.id])
    used = store.read_sql(
        "SELECT s.pair FROM run_segments r JOIN segments s ON s.id = r.segment_id WHERE r.run_id = :r",
        {"r": run_id},
    )
    assert len(used) == 24 and not used["pair"].isin(["bass-p001", "bass-p002"]).any()

    # every decision is listed with who and why; including keeps the row
    listed = curation.list_exclusions(store)
    assert list(listed["id"]) == [pair.id, whole.id] and listed["active"].all()
    assert listed.loc[0, "excluded_by"] == "ana" and listed.loc[0, "reason"] == "raw is another take"
    back = curation.include(store, pair.id, reason="checked: right raw", by="ben")
    assert not back.active
    listed = curation.list_exclusions(store)
    assert list(listed["active"]) == [False, True] and listed.loc[0, "included_by"] == "ben"
    assert list(curation.list_exclusions(store, active_only=True)["id"]) == [whole.id]
    assert len(paired_matrix(store, "bass", FEATURES)) == 26

    # bad input: one clear line, nothing stored
    for kwargs, message in (
        ({"pair": "bass-p999", "reason": "x"}, "no segment pair"),
        ({"multitrack": "nope", "reason": "x"}, "no multitrack"),
        ({"pair": "bass-p003", "reason": "  "}, "give a reason"),
        ({"multitrack": "mt002", "reason": "again"}, "already excluded"),
        ({"pair": "bass-p003", "multitrack": "mt003", "reason": "x"}, "exactly one"),
    ):
        with pytest.raises(StemstoreError, match=message):
            curation.exclude(store, **kwargs)
    with pytest.raises(StemstoreError, match="already reversed"):
        curation.include(store, pair.id)
    with pytest.raises(StemstoreError, match="no exclusion 999"):
        curation.include(store, 999)
    assert len(curation.list_exclusions(store)) == 2


def test_segment_leaves_excluded_units_alone_and_records_them(store, tmp_path):
    _bass_multitracks(store, tmp_path, seconds=4.0, count=3)
    first = segment(store, window=2.0)
    assert first.pairs == 3
    whole = curation.exclude(store, multitrack="MT2", reason="wrong session")
    with store.engine.begin() as conn:  # audio changed: every unit wants segmenting again
        conn.exec_driver_sql("UPDATE segments SET stale = TRUE")
    second = segment(store, window=2.0)
    assert (second.pairs, second.excluded) == (2, 1)
    assert "1 left out (excluded)" in second.describe()
    params = json.loads(
        store.read_sql("SELECT params FROM runs WHERE id = :r", {"r": second.run_id})["params"][0]
    )
    assert params["exclusions"] == [whole.id]
    mt2 = store.read_sql(
        "SELECT s.stale FROM segments s JOIN tracks t ON t.id = s.track_id "
        "JOIN multitracks m ON m.id = t.multitrack_id WHERE m.name = 'MT2'"
    )
    assert len(mt2) == 2 and mt2["stale"].astype(bool).all()  # left as they were


def test_cli_exclude_include_and_export(store, db_url, tmp_path):
    import_features(store, _pairs_csv(tmp_path / "pairs.csv", n_pairs=3))
    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, [*args, "--db", db_url])

    done = run("exclude", "--pair", "bass-p000", "--reason", "clipped raw", "--by", "ana")
    assert done.exit_code == 0, done.output
    assert "exclusion 1: pair bass-p000 excluded (clipped raw)" in done.output
    assert run("exclude", "--multitrack", "mt001", "--reason", "wrong mix").exit_code == 0
    segment_id = int(store.read_sql("SELECT id FROM segments WHERE pair = 'bass-p002' LIMIT 1")["id"][0])
    assert run("exclude", "--segment", str(segment_id), "--reason", "noise").exit_code == 0

    refused = run("exclude", "--pair", "bass-p000", "--reason", "again")
    assert refused.exit_code == 1 and refused.output.count("\n") == 1 and "already excluded" in refused.output
    assert run("exclude", "--pair", "nope/bass", "--reason", "x").exit_code == 1

    back = run("include", "--pair", "bass-p000", "--reason", "fine after all")
    assert back.exit_code == 0 and "included again" in back.output
    assert run("include", "2").exit_code == 0

    csv = run("exclusions", "--format", "csv")
    assert csv.exit_code == 0, csv.output
    frame = pd.read_csv(pd.io.common.StringIO(csv.output))
    assert list(frame["scope"]) == ["pair", "multitrack", "pair"]
    assert list(frame["active"]) == [False, False, True]
    listed = json.loads(run("exclusions", "--active", "--format", "json").output)
    assert [e["pair"] for e in listed] == ["bass-p002"] and listed[0]["reason"] == "noise"
    assert listed[0]["excluded_at"][:2] == "20" and listed[0]["included_at"] is None
    helped = runner.invoke(app, ["exclude", "--help"])
    assert "stemstore exclude --pair" in helped.output


def test_extract_leaves_excluded_segments_pending_until_included(store, tmp_path):
    from stemstore.features.extraction import extract

    _bass_multitracks(store, tmp_path, seconds=2.0, count=2)
    assert segment(store, window=2.0).pairs == 2
    whole = curation.exclude(store, multitrack="MT2", reason="wrong session")
    status_sql = (
        "SELECT m.name, s.status FROM segments s JOIN tracks t ON t.id = s.track_id "
        "JOIN multitracks m ON m.id = t.multitrack_id ORDER BY m.name"
    )

    first = extract(store)
    assert (first.pending, first.extracted, first.excluded) == (2, 2, 2)  # MT1's raw and stem
    assert "2 left out (excluded)" in first.describe()
    params = json.loads(
        store.read_sql("SELECT params FROM runs WHERE id = :r", {"r": first.run_id})["params"][0]
    )
    assert params["exclusions"] == [whole.id] and params["excluded"] == 2
    statuses = store.read_sql(status_sql)
    assert set(statuses[statuses["name"] == "MT2"]["status"]) == {"pending"}

    nothing = extract(store)
    assert nothing.run_id is None and "all excluded by a curator" in nothing.describe()

    curation.include(store, exclusion_id=whole.id, reason="checked: right session")
    after = extract(store)
    assert (after.extracted, after.excluded) == (2, 0)
    assert set(store.read_sql(status_sql)["status"]) == {"extracted"}


def test_study_leaves_out_exclusions_and_reuses_its_runs(store, tmp_path):
    from stemstore.study import run_study

    import_features(store, _pairs_csv(tmp_path / "pairs.csv"))
    excluded = curation.exclude(store, pair="bass-p004", reason="bleed")
    first = run_study(store, "bass", select_preset="fast", regress_preset="paper", n_jobs=1)
    assert first.skipped is None and first.reused == []
    for run_id in (first.selection_run, first.regression_run):
        params = json.loads(
            store.read_sql("SELECT params FROM runs WHERE id = :r", {"r": run_id})["params"][0]
        )
        assert params["exclusions"] == [excluded.id]
        used = store.read_sql(
            "SELECT s.pair FROM run_segments r JOIN segments s ON s.id = r.segment_id WHERE r.run_id = :r",
            {"r": run_id},
        )
        assert "bass-p004" not in set(used["pair"]) and len(used) == 26
    again = run_study(store, "bass", select_preset="fast", regress_preset="paper", n_jobs=1)
    assert again.reused == [f"selection run {first.selection_run}", f"regression run {first.regression_run}"]
