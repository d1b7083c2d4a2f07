"""``stemstore serve`` in a real headless browser (Debian's chromium driven by Playwright).

A small synthetic corpus is synthesised, ingested, segmented (bass), extracted and selected;
the app serves it from a thread of this process. The browser opens the corpus, filters to
bass, opens a pair, checks that both players load audio with a duration, excludes the pair;
selection is run again and leaves the pair out. Screenshots of each page are written to
``test-artifacts/web/`` (or $STEMSTORE_TEST_ARTIFACTS) and the folder is printed.

Then what must be refused is tried over HTTP: GET on the POST routes, POSTs without or with a
wrong CSRF token or from another origin, and crafted ids and paths (``..``, absolute paths,
a symbolic link out of the corpus).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from stemstore.analysis.selection_runs import select
from stemstore.corpus.ingest import ingest
from stemstore.features.extraction import extract
from stemstore.segments import segment
from stemstore.store.connection import Store
from stemstore.synth.corpus import synthesize_corpus
from stemstore.web.app import CSRF_COOKIE

from tests.support import served

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("STEMSTORE_TEST_ARTIFACTS", ROOT / "test-artifacts" / "web"))
N_MULTITRACKS = 12
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: A custom group of the bass and guitar labels: enough pairs from few multitracks.
GROUP = "low-strings"
#: Selection small enough for seconds: few forests of few trees.
TINY_SELECTION = dict(
    preset="fast", n_forests=3, n_trees=50, n_fits_interp=3, n_trees_interp=20, n_fits_pred=3, n_trees_pred=20
)


@dataclass
class Site:
    url: str
    store: Store
    corpus: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    work = tmp_path_factory.mktemp("serve")
    corpus = work / "corpus"
    synthesize_corpus(corpus, n_multitracks=N_MULTITRACKS, seconds=3.0, seed=0)
    store = Store.open(str(work / "store.duckdb"), create=True, check_schema=False)
    store.init()
    ingest(store, corpus)
    store.set_group(GROUP, store.group_instruments("bass") + store.group_instruments("guitar"))
    segment(store, groups=[GROUP], window=2.0)
    extract(store, workers=2)
    select(store, GROUP, **TINY_SELECTION)
    with served(store) as url:
        yield Site(url, store, corpus)
    store.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"chromium not found at {CHROMIUM}: `make test` installs Debian's chromium", pytrace=False
        )
    with sync_playwright() as p:
        # root in a container has no user namespaces for chromium's sandbox
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--mute-audio"])
        yield b
        b.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


_DURATIONS = """() => Promise.all([...document.querySelectorAll('audio')].map(a => new Promise(done => {
    if (a.readyState >= 1) { done(a.duration); return; }
    a.addEventListener('loadedmetadata', () => done(a.duration), {once: true});
    a.addEventListener('error', () => done(-1), {once: true});
    a.load();
})))"""

_IMAGES_LOADED = """() => Promise.all([...document.querySelectorAll('img')].map(i => i.complete
    ? i.naturalWidth : new Promise(done => { i.onload = () => done(i.naturalWidth); i.onerror = () => done(0); })))"""


def test_curate_in_the_browser(site, browser):
    print(f"\nscreenshots: {ARTIFACTS}")
    page = browser.new_page(viewport={"width": 1400, "height": 900})

    # the corpus, then filtered to one group
    page.goto(site.url + "/")
    assert page.locator("h1").inner_text() == "Corpus"
    assert page.locator("#multitracks tbody tr").count() == N_MULTITRACKS
    _shot(page, "1-corpus")
    page.select_option("#filter-group", GROUP)
    page.click("#apply-filters")
    page.wait_for_url(f"**group={GROUP}**")
    groups_shown = set(page.locator("#table2 tbody tr td:first-child").all_inner_texts())
    assert groups_shown == {GROUP}
    bass_multitracks = page.locator("#multitracks tbody tr").count()
    assert 0 < bass_multitracks <= N_MULTITRACKS
    _shot(page, "2-corpus-bass")

    # the group's pairs, then one pair
    page.click("#pairs-of-filter")
    page.wait_for_url("**/pairs?**")
    links = page.locator("#pairs tbody tr td:first-child a")
    assert links.count() >= 11
    pair_name = links.first.inner_text()
    links.first.click()
    page.wait_for_url("**/pairs/*?group=*")
    assert pair_name in page.locator("h1").inner_text()
    durations = page.evaluate(_DURATIONS)
    assert len(durations) == 4 and all(d > 0 for d in durations), durations  # original and processed, ×2
    processed = page.evaluate("[...document.querySelectorAll('audio.processed')].map(a => a.duration)")
    assert all(abs(d - 2.0) < 0.01 for d in processed), processed  # the 2-s window the extractor saw
    assert all(w > 0 for w in page.evaluate(_IMAGES_LOADED))
    values = page.locator("#values tbody tr")
    fpred = json.loads(site.store.read_sql("SELECT counts FROM runs WHERE kind = 'selection'")["counts"][0])
    assert values.count() == fpred["f_pred"]
    _shot(page, "3-pair")

    # exclude it with a reason
    page.fill("#exclude-reason", "raw bleeds from the kick")
    page.click("#exclude")
    page.wait_for_selector("#excluded-note")
    assert "raw bleeds from the kick" in page.locator("#excluded-note").inner_text()
    _shot(page, "4-pair-excluded")
    exclusion = site.store.read_sql("SELECT id, pair, reason FROM exclusions")
    assert list(exclusion["pair"]) == [pair_name]

    # selection again: the run records the exclusion and leaves the pair out
    run_id = select(site.store, GROUP, **TINY_SELECTION)
    params = json.loads(
        site.store.read_sql("SELECT params FROM runs WHERE id = :r", {"r": run_id})["params"][0]
    )
    assert params["exclusions"] == [int(exclusion["id"][0])]
    used = site.store.read_sql(
        "SELECT s.pair FROM run_segments r JOIN segments s ON s.id = r.segment_id WHERE r.run_id = :r",
        {"r": run_id},
    )
    assert pair_name not in set(used["pair"]) and len(used) == params["n_segments"]

    # the exclusions, exportable
    page.goto(site.url + "/exclusions")
    assert page.locator("#exclusions tbody tr").count() == 1
    _shot(page, "5-exclusions")
    exported = page.request.get(site.url + "/exclusions.csv").text()
    assert "raw bleeds from the kick" in exported

    # results of the new run: tables and figures
    page.goto(f"{site.url}/results?group={GROUP}&selection_run={run_id}")
    assert page.locator("#table4 tbody tr").count() == 1
    assert str(run_id) in page.locator("#table4").inner_text()
    widths = page.evaluate(_IMAGES_LOADED)  # figs 2, 3 and 4 (4 of the f_pred: no regression yet)
    assert len(widths) == 3 and all(w > 0 for w in widths)
    _shot(page, "6-results")

    # the read-only console: a read runs, a write is refused
    page.goto(site.url + "/query")
    page.fill("#sql", "SELECT pair, reason FROM exclusions")
    page.click("#run-query")
    assert "raw bleeds from the kick" in page.locator("#result").inner_text()
    page.fill("#sql", "DELETE FROM exclusions")
    page.click("#run-query")
    assert "refused" in page.locator("#query-error").inner_text()
    _shot(page, "7-query")
    assert len(site.store.read_sql("SELECT id FROM exclusions")) == 1
    page.close()


# -- what must be refused -----------------------------------------------------------------------
def _count(site) -> int:
    return len(site.store.read_sql("SELECT id FROM exclusions"))


def _a_segment(site) -> int:
    return int(
        site.store.read_sql("SELECT id FROM segments WHERE pair IS NOT NULL ORDER BY id LIMIT 1")["id"][0]
    )


def test_writes_need_post_and_the_session_token(site):
    before = _count(site)
    segment_id = _a_segment(site)
    with httpx.Client(base_url=site.url) as client:
        assert client.get("/exclude").status_code == 405
        assert client.get("/exclusions/1/include").status_code == 405
        client.get("/")  # the session's token arrives as a cookie
        token = client.cookies[CSRF_COOKIE]
        form = {"segment": str(segment_id), "reason": "forged"}
        assert client.post("/exclude", data=form).status_code == 403  # no token in the form
        assert client.post("/exclude", data={**form, "csrf": "x" * 43}).status_code == 403  # wrong token
        other_origin = {"Origin": "http://evil.example"}
        assert client.post("/exclude", data={**form, "csrf": token}, headers=other_origin).status_code == 403
        assert client.post("/exclusions/1/include", data={"csrf": "nope"}).status_code == 403
    with httpx.Client(base_url=site.url) as fresh:  # a token without its cookie
        assert fresh.post("/exclude", data={**form, "csrf": token}).status_code == 403
    assert _count(site) == before


def test_only_corpus_files_are_served_by_id(site):
    tracks = site.store.read_sql("SELECT id, path FROM tracks WHERE audio_status = 'present' ORDER BY id")
    track_id, victim = int(tracks["id"][0]), int(tracks["id"][1])
    with httpx.Client(base_url=site.url) as client:
        whole = client.get(f"/audio/tracks/{track_id}")
        assert whole.status_code == 200 and whole.content[:4] == b"RIFF"
        part = client.get(f"/audio/tracks/{track_id}", headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and len(part.content) == 100
        assert part.headers["content-range"].startswith("bytes 0-99/")
        seg = _a_segment(site)
        wav = client.get(f"/audio/segments/{seg}/processed.wav", headers={"Range": "bytes=4-11"})
        assert wav.status_code == 206 and len(wav.content) == 8

        for crafted in (
            "/audio/tracks/../../../../etc/passwd",
            "/audio/tracks/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "/audio/tracks/%2Fetc%2Fpasswd",
            "/audio/tracks/abc",
            "/audio/tracks/99999999",
            "/audio/segments/1%20OR%201=1/processed.wav",
            "/pictures/segments/1/..%2f..%2fapp.png",
            "/static/../app.py",
            "/static/%2e%2e/app.py",
            f"/results/fig9.png?group={GROUP}",
        ):
            response = client.get(crafted)
            assert response.status_code == 404, crafted
            assert b"import" not in response.content and b"root:" not in response.content

        # a track whose stored path leads out of the corpus: absolute, dotted, a symlink out
        link = site.corpus / "escape.wav"
        link.symlink_to("/etc/passwd")
        original = tracks["path"][1]
        try:
            for path in ("/etc/passwd", "../../../../etc/passwd", "escape.wav"):
                with site.store.engine.begin() as conn:
                    conn.exec_driver_sql("UPDATE tracks SET path = ? WHERE id = ?", (path, victim))
                response = client.get(f"/audio/tracks/{victim}")
                assert response.status_code == 404, path
                assert b"root:" not in response.content
        finally:
            with site.store.engine.begin() as conn:
                conn.exec_driver_sql("UPDATE tracks SET path = ? WHERE id = ?", (original, victim))
            link.unlink()
