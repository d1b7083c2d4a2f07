"""What several test modules share that is not a fixture: the shared data folder and audio builders.

Test modules import from here (never from each other or from ``conftest.py``); fixtures live in
``conftest.py``.

Some tests read the project's shared data folder, ``../shared`` beside the checkout (the
MedleyDB metadata, the feature catalog and the reference study's feature values; see
docs/method.md, sections 1, 3 and 7). They reach it only through :func:`require_shared`.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import sqlalchemy as sa

from stemstore.audio import SAMPLE_RATE
from stemstore.store.connection import instrument_ids
from stemstore.store.schema import Corpus, Multitrack, Track, TrackLink

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


# -- building a corpus by hand ----------------------------------------------------------------
SR = SAMPLE_RATE


# -- building a corpus by hand ----------------------------------------------------------------
def noise(seconds: float, level: float = 0.01, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, level, int(seconds * SR)).astype(np.float32)


def tone(seconds: float, freq: float = 220.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def with_burst(base: np.ndarray, start_s: float, burst: np.ndarray) -> np.ndarray:
    out = base.copy()
    i = int(start_s * SR)
    out[i : i + burst.size] += burst
    return out


def build_corpus(store, root: Path, multitracks: dict[str, list[dict]], corpus: str = "handmade") -> dict:
    """Write WAVs and the rows ingest would make. ``multitracks`` maps a name to its stems::

        {"code": "S01", "instrument": "electric bass", "audio": array | None | bytes,
         "raws": [{"code": "S01/R01", "audio": ...}, ...]}

    ``audio`` None means the file is missing; bytes are written as they are (a corrupt file).
    Returns {(multitrack, code): track id}.
    """
    root.mkdir(parents=True, exist_ok=True)
    ids: dict[tuple[str, str], int] = {}

    def write(name: str, code: str, audio) -> str:
        rel = f"{name}/{name}_{code.replace('/', '_')}.wav"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(audio, bytes):
            path.write_bytes(audio)
        elif audio is not None:
            sf.write(path, audio, SR, subtype="FLOAT")
        return rel

    with store.session() as s:
        c = s.scalar(sa.select(Corpus).where(Corpus.name == corpus))
        if c is None:
            c = Corpus(name=corpus, root=str(root), format="medleydb")
            s.add(c)
            s.flush()
        for name, stems in multitracks.items():
            mt = Multitrack(corpus_id=c.id, name=name)
            s.add(mt)
            s.flush()
            inst = instrument_ids(s, [st["instrument"] for st in stems])
            for st in stems:
                stem = Track(
                    multitrack_id=mt.id,
                    kind="stem",
                    code=st["code"],
                    instrument_id=inst[st["instrument"]],
                    labels=[st["instrument"]],
                    path=write(name, st["code"], st["audio"]),
                    audio_status="present",
                )
                s.add(stem)
                s.flush()
                ids[(name, st["code"])] = stem.id
                for raw_spec in st.get("raws", []):
                    raw = Track(
                        multitrack_id=mt.id,
                        kind="raw",
                        code=raw_spec["code"],
                        instrument_id=inst[st["instrument"]],
                        labels=[st["instrument"]],
                        path=write(name, raw_spec["code"], raw_spec["audio"]),
                        audio_status="present",
                    )
                    s.add(raw)
                    s.flush()
                    ids[(name, raw_spec["code"])] = raw.id
                    s.add(TrackLink(stem_track_id=stem.id, raw_track_id=raw.id))
    return ids


def segment_rows(store) -> list[dict]:
    df = store.read_sql(
        "SELECT s.*, t.code, m.name AS multitrack FROM segments s "
        "JOIN tracks t ON t.id = s.track_id JOIN multitracks m ON m.id = t.multitrack_id "
        "ORDER BY s.id"
    )
    rows = df.to_dict("records")
    for r in rows:
        for key in ("pair", "reason", "split"):  # NULL text reads back as NaN in pandas
            r[key] = None if pd.isna(r[key]) else r[key]
        r["params"] = json.loads(r["params"]) if isinstance(r["params"], str) else r["params"]
    return rows


# -- the web app ------------------------------------------------------------------------------
@contextmanager
def served(store):
    """``stemstore serve``'s app over ``store``, run by uvicorn in a thread on a free loopback
    port; yields the base URL and stops the server on exit."""
    import socket
    import threading
    import time

    import uvicorn

    from stemstore.web.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
