"""Segment pairs (docs/method.md, section 2) on constructed audio, on DuckDB and PostgreSQL.

The corpora here are written by hand (``build_corpus``): a few tracks of a few seconds whose
loud stretches are known, so the chosen windows and raws can be checked exactly. The
end-to-end path through ``stemstore synth`` and ingest is in tests/features/test_extraction.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import sqlalchemy as sa

from stemstore.segments import segment

from tests.support import SR, build_corpus, noise, segment_rows, tone, with_burst


# -- the choice of windows, raws and stems ------------------------------------------------------
def test_the_loud_window_the_loudest_raw_and_the_loudest_stem(store, tmp_path):
    # Stem S01: quiet noise with a loud 2-s tone burst at 3.0 s.
    stem = with_burst(noise(8, seed=1), 3.0, tone(2.0, amplitude=0.5))
    # Raw R01 is the loudest overall but nearly silent during 3..5 s; R02 is loud exactly there.
    raw_loud_elsewhere = np.concatenate(
        [tone(3.0, amplitude=0.8), noise(2, 0.001, 2), tone(3.0, amplitude=0.8)]
    )
    raw_loud_there = with_burst(noise(8, seed=3), 3.0, tone(2.0, amplitude=0.2))
    # Two keys stems share a label: S03 is quieter than S02 everywhere.
    ids = build_corpus(
        store,
        tmp_path,
        {
            "MT1": [
                {
                    "code": "S01",
                    "instrument": "electric bass",
                    "audio": stem,
                    "raws": [
                        {"code": "S01/R01", "audio": raw_loud_elsewhere},
                        {"code": "S01/R02", "audio": raw_loud_there},
                    ],
                },
                {
                    "code": "S02",
                    "instrument": "piano",
                    "audio": with_burst(noise(6, 0.05, 4), 1.0, tone(2.0, 440, 0.4)),
                    "raws": [{"code": "S02/R01", "audio": noise(6, 0.05, 5)}],
                },
                {
                    "code": "S03",
                    "instrument": "piano",
                    "audio": noise(6, 0.02, 6),
                    "raws": [{"code": "S03/R01", "audio": noise(6, 0.05, 7)}],
                },
            ]
        },
    )

    summary = segment(store, window=2.0)
    assert (summary.units, summary.pairs, summary.skipped_units) == (2, 2, 0)
    rows = {r["code"]: r for r in segment_rows(store)}
    assert set(rows) == {"S01", "S01/R02", "S02", "S02/R01", "S03"}

    bass_stem, bass_raw = rows["S01"], rows["S01/R02"]
    assert bass_stem["start"] == pytest.approx(3.0, abs=5 / SR)  # the burst window
    assert bass_raw["start"] == bass_stem["start"]  # the same interval
    assert bass_stem["duration"] == bass_raw["duration"] == pytest.approx(2.0)
    assert bass_stem["pair"] == bass_raw["pair"] == "MT1/electric bass"
    assert (bass_stem["role"], bass_raw["role"]) == ("stem", "raw")
    assert bass_stem["status"] == bass_raw["status"] == "pending"
    assert bass_raw["track_id"] == ids[("MT1", "S01/R02")]
    params = bass_stem["params"]
    assert params["window"] == 2.0 and params["normalise"] is True and params["equal_loudness"] is True
    assert params["sample_rate"] == SR and params["start_sample"] == round(bass_stem["start"] * SR)
    assert np.isfinite(params["replaygain_db"]) and params["replaygain_db"] != 0.0
    assert np.isfinite(bass_raw["params"]["replaygain_db"])

    assert rows["S02"]["status"] == "pending" and rows["S02"]["pair"] == "MT1/piano"
    assert rows["S02"]["start"] == pytest.approx(1.0, abs=5 / SR)
    assert rows["S03"]["status"] == "skipped" and rows["S03"]["reason"].startswith("not analysed")
    assert rows["S03"]["pair"] is None

    run = store.read_sql("SELECT kind, status, params, counts FROM runs WHERE kind = 'segment'")
    assert list(run["status"]) == ["done"]
    assert json.loads(run["counts"][0])["pairs"] == 2


def test_no_normalise_records_no_gain(store, tmp_path):
    build_corpus(
        store,
        tmp_path,
        {
            "MT1": [
                {
                    "code": "S01",
                    "instrument": "electric bass",
                    "audio": tone(4.0),
                    "raws": [{"code": "S01/R01", "audio": tone(4.0, amplitude=0.1)}],
                }
            ]
        },
    )
    segment(store, window=2.0, normalise=False)
    for row in segment_rows(store):
        assert row["params"]["normalise"] is False and row["params"]["replaygain_db"] == 0.0


# -- skip reasons -------------------------------------------------------------------------------
def test_skip_reasons_are_recorded(store, tmp_path):
    ok_raw = [{"code": "S01/R01", "audio": noise(4, 0.1, 9)}]
    build_corpus(
        store,
        tmp_path,
        {
            "Short": [
                {"code": "S01", "instrument": "electric bass", "audio": noise(1.0, 0.1), "raws": ok_raw}
            ],
            "Silent": [
                {
                    "code": "S01",
                    "instrument": "electric bass",
                    "audio": np.zeros(4 * SR, np.float32),
                    "raws": ok_raw,
                }
            ],
            "Missing": [{"code": "S01", "instrument": "electric bass", "audio": None, "raws": ok_raw}],
            "Corrupt": [
                {
                    "code": "S01",
                    "instrument": "electric bass",
                    "audio": b"RIFF\x10\x00\x00\x00WAVEjunkjunk",
                    "raws": ok_raw,
                }
            ],
            "NoRaw": [{"code": "S01", "instrument": "electric bass", "audio": noise(4, 0.1)}],
            "SilentRaw": [
                {
                    "code": "S01",
                    "instrument": "electric bass",
                    "audio": noise(4, 0.1),
                    "raws": [{"code": "S01/R01", "audio": np.zeros(4 * SR, np.float32)}],
                }
            ],
            "MissingRaw": [
                {
                    "code": "S01",
                    "instrument": "electric bass",
                    "audio": noise(4, 0.1),
                    "raws": [{"code": "S01/R01", "audio": None}],
                }
            ],
        },
    )
    summary = segment(store, window=2.0)
    assert (summary.units, summary.pairs, summary.skipped_units) == (7, 0, 7)
    rows = {r["multitrack"]: r for r in segment_rows(store)}
    assert all(r["status"] == "skipped" and r["role"] == "stem" and r["pair"] is None for r in rows.values())
    expected = {
        "Short": "too short",
        "Silent": "silent",
        "Missing": "missing audio",
        "Corrupt": "unreadable audio",
        "NoRaw": "no raw",
        "SilentRaw": "silent",
        "MissingRaw": "missing audio",
    }
    for name, kind in expected.items():
        assert rows[name]["reason"].startswith(kind + ":"), (name, rows[name]["reason"])
    assert summary.skip_reasons == {
        "too short": 1,
        "silent": 2,
        "missing audio": 2,
        "unreadable audio": 1,
        "no raw": 1,
    }


def test_a_window_shorter_than_a_second_is_refused(store):
    from stemstore.errors import StemstoreError

    with pytest.raises(StemstoreError, match="window"):
        segment(store, window=0.5)


# -- incremental ----------------------------------------------------------------------------------
def _two_multitracks(store, tmp_path):
    return build_corpus(
        store,
        tmp_path,
        {
            f"MT{i}": [
                {
                    "code": "S01",
                    "instrument": "electric bass",
                    "audio": with_burst(noise(5, seed=i), 2.0, tone(2.0)),
                    "raws": [{"code": "S01/R01", "audio": noise(5, 0.1, 10 + i)}],
                },
                {
                    "code": "S02",
                    "instrument": "male singer",
                    "audio": noise(5, 0.2, 20 + i),
                    "raws": [{"code": "S02/R01", "audio": noise(5, 0.1, 30 + i)}],
                },
            ]
            for i in (1, 2)
        },
    )


def test_segment_is_incremental_and_redoes_stale_units(store, tmp_path):
    _two_multitracks(store, tmp_path)
    first = segment(store, window=2.0)
    assert (first.units, first.pairs) == (4, 4)
    before = segment_rows(store)

    second = segment(store, window=2.0)
    assert second.unchanged == 4 and second.pairs == 0 and second.run_id is None
    assert segment_rows(store) == before

    # Ingest marks a segment stale when its audio changed: that unit alone is redone.
    stale_id = next(r["id"] for r in before if r["multitrack"] == "MT1" and r["code"] == "S01/R01")
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE segments SET stale = TRUE WHERE id = :id"), {"id": stale_id})
    third = segment(store, window=2.0)
    assert (third.unchanged, third.pairs, third.replaced) == (3, 1, 1)
    after = segment_rows(store)
    assert len(after) == len(before)
    assert stale_id not in {r["id"] for r in after}  # replaced (no run used it)
    assert not any(r["stale"] for r in after)
    redone = [
        r for r in after if r["multitrack"] == "MT1" and r["instrument_id"] == before[0]["instrument_id"]
    ]
    assert {r["code"] for r in redone} == {"S01", "S01/R01"}
    assert all(r["params"]["run"] == third.run_id for r in redone)


def test_groups_restrict_the_work(store, tmp_path):
    _two_multitracks(store, tmp_path)
    summary = segment(store, groups=["vocal"], window=2.0)
    assert (summary.units, summary.pairs) == (2, 2)
    assert {r["pair"].split("/")[1] for r in segment_rows(store)} == {"male singer"}
    assert segment(store, window=2.0).pairs == 2  # the bass units, now
