"""`stemstore serve` as a command, and the app at the scale of 10,000 segment pairs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pandas as pd

from stemstore.store.connection import Store
from stemstore.web.corpus import PAGE_SIZE

from tests.support import served

STEMSTORE = [sys.executable, "-m", "stemstore.cli.app"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_prints_the_url_binds_loopback_and_stops_on_ctrl_c(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "STEMSTORE_DB"}
    db = str(tmp_path / "s.duckdb")
    subprocess.run([*STEMSTORE, "init", "--db", db], check=True, capture_output=True, env=env)
    port = _free_port()
    server = subprocess.Popen(
        [*STEMSTORE, "serve", "--db", db, "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = server.stderr.readline()
        assert f"at http://127.0.0.1:{port}/" in line
        deadline = time.monotonic() + 20
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/")
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.1)
        assert page.status_code == 200 and "Corpus" in page.text
        if shutil.which("ss"):  # iproute2: what the socket is bound to
            listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
            assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)
    assert server.returncode in (0, 130)

    missing = subprocess.run(
        [*STEMSTORE, "serve", "--db", str(tmp_path / "nope.duckdb")], capture_output=True, text=True, env=env
    )
    assert missing.returncode == 1 and missing.stderr.startswith("error: no store at")
    assert missing.stderr.count("\n") == 1


def _big_corpus(store: Store, n_multitracks: int = 2000, pairs_each: int = 5) -> None:
    """10,000 pairs (20,000 segments) written straight into the tables: the pages' SQL at scale."""
    n_tracks = n_multitracks * pairs_each * 2
    instrument = int(store.read_sql("SELECT id FROM instruments WHERE name = 'electric bass'")["id"][0])
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO corpora (id, name, root, format, created_at) "
            "VALUES (900, 'big', '/nonexistent', 'medleydb', CURRENT_TIMESTAMP)"
        )
        store.bulk_insert(
            conn,
            "multitracks",
            pd.DataFrame(
                {
                    "id": np.arange(1, n_multitracks + 1, dtype=np.int64),
                    "corpus_id": np.int64(900),
                    "name": [f"Big{i:05d}" for i in range(1, n_multitracks + 1)],
                    "genre": "Rock",
                    "ingested_at": pd.Timestamp("2026-01-01"),
                }
            ),
        )
        track_ids = np.arange(1, n_tracks + 1, dtype=np.int64)
        store.bulk_insert(
            conn,
            "tracks",
            pd.DataFrame(
                {
                    "id": track_ids,
                    "multitrack_id": (track_ids - 1) // (pairs_each * 2) + 1,
                    "kind": np.where(track_ids % 2 == 1, "stem", "raw"),
                    "code": [f"T{i}" for i in track_ids],
                    "instrument_id": np.int64(instrument),
                    "path": [f"t{i}.wav" for i in track_ids],
                    "audio_status": "present",
                    "stale": False,
                }
            ),
        )
        store.bulk_insert(
            conn,
            "segments",
            pd.DataFrame(
                {
                    "id": track_ids,
                    "track_id": track_ids,
                    "instrument_id": np.int64(instrument),
                    "role": np.where(track_ids % 2 == 1, "stem", "raw"),
                    "pair": [f"Big{(i - 1) // 10 + 1:05d}/p{(i - 1) // 2}" for i in track_ids],
                    "start": 0.0,
                    "duration": 10.0,
                    "source": "audio",
                    "status": "extracted",
                    "stale": False,
                    "created_at": pd.Timestamp("2026-01-01"),
                }
            ),
        )


def test_pages_stay_paged_and_quick_with_10000_pairs(tmp_path):
    store = Store.open(str(tmp_path / "big.duckdb"), create=True, check_schema=False)
    store.init()
    _big_corpus(store)
    with served(store) as url, httpx.Client(base_url=url, timeout=60) as client:
        for url, marker, rows in (
            ("/?group=bass", 'href="/multitracks/', PAGE_SIZE),
            ("/?group=bass&page=40", 'href="/multitracks/', PAGE_SIZE),
            ("/pairs?group=bass", 'href="/pairs/', PAGE_SIZE),
            ("/pairs?group=bass&page=200", 'href="/pairs/', PAGE_SIZE),
            ("/pairs?group=bass&page=9999", 'href="/pairs/', PAGE_SIZE),  # past the end: the last page
        ):
            started = time.perf_counter()
            page = client.get(url)
            took = time.perf_counter() - started
            assert page.status_code == 200, url
            assert page.text.count(marker) == rows, url
            assert took < 5, f"{url} took {took:.1f} s"
        assert "page 200 of 200 (10000 in all)" in client.get("/pairs?group=bass&page=200").text
        assert "(2000 in all)" in client.get("/").text
    store.close()
