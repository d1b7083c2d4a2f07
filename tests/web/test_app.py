"""The web app's pages and actions on both backends (DuckDB and PostgreSQL), served by uvicorn: a hand-built corpus, segmented, no features (the browser test has those)."""

from __future__ import annotations

import json

import httpx
import pytest

from stemstore.segments import segment
from stemstore.web.app import CSRF_COOKIE

from tests.support import build_corpus, noise, served, tone, with_burst


@pytest.fixture
def client(store, tmp_path):
    build_corpus(
        store,
        tmp_path / "corpus",
        {
            f"MT{i}": [
                {
                    "code": "S01",
                    "instrument": "electric bass",
                    "audio": with_burst(noise(3, seed=i), 1.0, tone(1.5)),
                    "raws": [{"code": "S01/R01", "audio": noise(3, 0.1, 10 + i)}],
                },
                {
                    "code": "S02",
                    "instrument": "male singer",
                    "audio": noise(3, 0.2, 20 + i),
                    "raws": [{"code": "S02/R01", "audio": None}],  # missing file
                },
            ]
            for i in (1, 2, 3)
        },
    )
    with store.engine.begin() as conn:  # what ingest records for a file it cannot find
        conn.exec_driver_sql(
            "UPDATE tracks SET audio_status = 'missing', status_reason = 'file not found' "
            "WHERE code = 'S02/R01'"
        )
    segment(store, window=1.5)
    with served(store) as url, httpx.Client(base_url=url, timeout=60) as c:
        c.get("/")  # the session's CSRF token arrives as a cookie
        yield c


def _pair_id(store, multitrack: str = "MT1") -> int:
    return int(
        store.read_sql(
            "SELECT id FROM segments WHERE role = 'stem' AND pair = :p", {"p": f"{multitrack}/electric bass"}
        )["id"][0]
    )


def test_corpus_and_pairs_pages_filter_and_page(client, store):
    page = client.get("/")
    assert page.status_code == 200
    assert all(f"MT{i}" in page.text for i in (1, 2, 3)) and 'id="table2"' in page.text
    assert "S02/R01: missing" in page.text  # the audio problem with its reason
    bass = client.get("/", params={"group": "bass", "status": "missing"})
    assert bass.status_code == 200 and "MT1" in bass.text
    assert "(no multitracks match)" in client.get("/", params={"genre": "Polka"}).text
    assert "electric bass" in client.get("/", params={"group": "bass"}).text
    unknown = client.get("/", params={"group": "tuba-ensemble"})
    assert unknown.status_code == 400 and "tuba-ensemble" in unknown.text
    assert client.get("/", params={"status": "bogus"}).status_code == 400

    pairs = client.get("/pairs", params={"group": "bass"})
    assert pairs.status_code == 200 and pairs.text.count('href="/pairs/') == 3
    assert "/male singer</a>" not in pairs.text  # the vocal unit gave no pair (missing raw)
    assert client.get("/pairs").text.count('href="/pairs/') == 3
    assert client.get("/multitracks/1").status_code == 200


def test_pair_page_media_and_errors(client, store):
    pair_id = _pair_id(store)
    page = client.get(f"/pairs/{pair_id}")
    assert page.status_code == 200
    assert page.text.count("<audio") == 4 and "/processed.wav" in page.text
    assert "no finished selection run" in page.text  # no features yet: said, not a crash
    track_id = int(
        store.read_sql("SELECT track_id FROM segments WHERE id = :i", {"i": pair_id})["track_id"][0]
    )
    ranged = client.get(f"/audio/tracks/{track_id}", headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and len(ranged.content) == 10
    wav = client.get(f"/audio/segments/{pair_id}/processed.wav")
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
    assert wav.headers["accept-ranges"] == "bytes"
    for kind in ("waveform", "spectrogram"):
        png = client.get(f"/pictures/segments/{pair_id}/{kind}.png")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert client.get("/pairs/999999").status_code == 404
    assert client.get("/pairs/abc").status_code == 400
    assert client.get(f"/pictures/segments/{pair_id}/bogus.png").status_code == 404

    # a file that became unreadable since segmenting: said on the page, no player for it
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE tracks SET audio_status = 'unreadable', status_reason = 'truncated WAV' "
            "WHERE code = 'S01/R01' AND multitrack_id = (SELECT id FROM multitracks WHERE name = 'MT1')"
        )
    page = client.get(f"/pairs/{pair_id}")
    assert "no audio to play: the file is unreadable (truncated WAV)" in page.text
    assert page.text.count("<audio") == 2


def test_exclude_include_export_and_query(client, store):
    token = client.cookies[CSRF_COOKIE]
    pair_id = _pair_id(store)
    done = client.post(
        "/exclude", data={"csrf": token, "segment": pair_id, "reason": "clipped", "next": f"/pairs/{pair_id}"}
    )
    assert done.status_code == 303 and done.headers["location"] == f"/pairs/{pair_id}"
    assert "Excluded (pair" in client.get(f"/pairs/{pair_id}").text
    assert 'class="excluded"' in client.get("/pairs").text
    offsite = client.post(
        "/exclude", data={"csrf": token, "multitrack": "MT2", "reason": "x", "next": "//evil"}
    )
    assert offsite.status_code == 303 and offsite.headers["location"] == "/exclusions"
    again = client.post("/exclude", data={"csrf": token, "segment": pair_id, "reason": "again"})
    assert again.status_code == 400 and "already excluded" in again.text
    assert client.post("/exclude", data={"csrf": token, "segment": pair_id, "reason": " "}).status_code == 400

    listed = json.loads(client.get("/exclusions.json").text)
    assert [(e["scope"], e["reason"], e["active"]) for e in listed] == [
        ("pair", "clipped", True),
        ("multitrack", "x", True),
    ]
    assert "excluded" in client.get("/", params={"status": "excluded"}).text
    first = listed[0]["id"]
    back = client.post(f"/exclusions/{first}/include", data={"csrf": token, "reason": "fine"})
    assert back.status_code == 303
    csv = client.get("/exclusions.csv")
    assert csv.headers["content-type"].startswith("text/csv") and "fine" in csv.text
    assert client.get("/exclusions.xml").status_code == 404

    rows = client.get("/query", params={"sql": "SELECT scope, reason FROM exclusions ORDER BY id"})
    assert rows.status_code == 200 and "clipped" in rows.text
    refused = client.get("/query", params={"sql": "DROP TABLE exclusions"})
    assert "refused" in refused.text
    assert len(store.read_sql("SELECT id FROM exclusions")) == 2
    results = client.get("/results", params={"group": "bass"})
    assert results.status_code == 200 and "Table 4" in results.text
    assert "No finished selection or regression run of bass" in results.text and "<img" not in results.text
