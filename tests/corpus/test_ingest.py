"""Ingest on DuckDB and PostgreSQL: the real MedleyDB metadata, a synthetic corpus, incremental
re-ingest, staleness, hostile metadata, broken audio, session folders, the CLI and kill -9.

The synthetic corpus (3 multitracks × 3 s) is written once per module; tests that change files
work on a copy.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from stemstore.cli.app import app
from stemstore import reports
from stemstore.corpus.ingest import ingest
from stemstore.reports import status
from stemstore.store.schema import RunSegment, Segment
from stemstore.store.connection import Store

from tests.support import MEDLEYDB_METADATA, require_shared

runner = CliRunner()


# -- helpers ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """A synthetic MedleyDB-layout corpus, written once for the module (do not modify it)."""
    from stemstore.synth.corpus import synthesize_corpus

    root = tmp_path_factory.mktemp("synthetic") / "corpus"
    synthesize_corpus(root, n_multitracks=3, seconds=3.0, seed=7, workers=1)
    return root


@pytest.fixture
def corpus(synthetic, tmp_path) -> Path:
    """A private copy of the synthetic corpus that a test may change."""
    return Path(shutil.copytree(synthetic, tmp_path / "corpus"))


def metadata_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/*_METADATA.yaml"))


def primary(label) -> str:
    return label[0] if isinstance(label, list) else label


def count_from_yaml(files: list[Path]) -> tuple[Counter, Counter, int]:
    """Table 2 counted independently, with plain yaml: raw tracks per primary label, multitracks
    per stem label, and the number of tracks (mix + stems + raws)."""
    raws, stems, tracks = Counter(), Counter(), 0
    for file in files:
        meta = yaml.safe_load(file.read_text())
        labels = set()
        tracks += 1 if meta.get("mix_filename") else 0
        for stem in meta["stems"].values():
            labels.add(primary(stem["instrument"]))
            tracks += 1
            for raw in (stem.get("raw") or {}).values():
                raws[primary(raw["instrument"])] += 1
                tracks += 1
        stems.update(labels)
    return raws, stems, tracks


def scalar(store: Store, sql: str, **params):
    return store.read_sql(sql, params).iloc[0, 0]


def edit_metadata(root: Path, name: str, change) -> None:
    file = root / name / f"{name}_METADATA.yaml"
    meta = yaml.safe_load(file.read_text())
    change(meta)
    file.write_text(yaml.safe_dump(meta, sort_keys=False))


def first_multitrack(root: Path) -> str:
    return metadata_files(root)[0].parent.name


# -- the real MedleyDB metadata -------------------------------------------------------------------
def test_all_medleydb_metadata_ingests_and_counts_match(store):
    metadata_dir = require_shared(MEDLEYDB_METADATA)
    files = sorted(metadata_dir.glob("*_METADATA.yaml"))
    assert len(files) == 330
    summary = ingest(store, metadata_dir, metadata_only=True)
    assert summary.ok and len(summary.new_multitracks) == 330, summary.describe()

    raws, stems, n_tracks = count_from_yaml(files)
    table2 = reports.report(store, "table2").drop_duplicates("instrument").set_index("instrument")
    assert table2["raw"].astype(int).to_dict() == {k: raws.get(k, 0) for k in table2.index}
    assert {k: v for k, v in table2["stem"].astype(int).to_dict().items() if v} == dict(stems)
    assert sum(raws.values()) == table2["raw"].sum()

    frames = status(store)
    per_instrument = frames["instruments"].drop_duplicates("instrument").set_index("instrument")
    assert per_instrument["raw_tracks"].to_dict() == {k: raws.get(k, 0) for k in per_instrument.index}
    assert per_instrument["stems"].to_dict() == {k: stems.get(k, 0) for k in per_instrument.index}
    groups = frames["groups"].set_index("group_name")
    for group, members in {
        "bass": ["electric bass", "synth bass"],
        "vocal": ["male singer", "female singer", "male rapper"],
    }.items():
        assert groups.loc[group, "raw_tracks"] == sum(raws[m] for m in members)
        assert groups.loc[group, "stems"] == sum(stems[m] for m in members)
    audio = frames["audio"]
    assert set(audio["audio_status"]) == {"missing"} and audio["tracks"].sum() == n_tracks

    # labels given as a list keep every label; the first is the primary one
    labels = store.read_sql(
        "SELECT t.labels, i.name FROM tracks t JOIN instruments i "
        "ON i.id = t.instrument_id WHERE t.labels LIKE '%,%'"
    )
    assert len(labels) > 0
    assert all(label.split('"')[1] == name for label, name in zip(labels["labels"], labels["name"]))
    # extra keeps the other top-level fields
    extra = scalar(store, "SELECT extra FROM multitracks WHERE name = 'AClassicEducation_NightOwl'")
    assert '"album": "Shaking Through Volume 2"' in extra and '"version": 1.2' in extra

    again = ingest(store, metadata_dir, metadata_only=True)
    assert len(again.new_multitracks) == 0 and len(again.unchanged_multitracks) == 330
    assert "0 new" in again.describe()


# -- the synthetic corpus --------------------------------------------------------------------------
def test_synthetic_corpus_ingests_and_reingest_changes_nothing(store, synthetic):
    summary = ingest(store, synthetic)
    assert summary.ok, summary.details()
    assert len(summary.new_multitracks) == 3
    raws, stems, n_tracks = count_from_yaml(metadata_files(synthetic))
    tracks = store.read_sql("SELECT * FROM tracks")
    assert len(tracks) == n_tracks and set(tracks["audio_status"]) == {"present"}
    assert set(tracks["sample_rate"]) == {44100} and set(tracks["channels"]) == {1}
    assert np.allclose(tracks["duration"], 3.0, atol=1e-3)
    some = tracks.iloc[3]
    assert some["content_hash"] == hashlib.sha256((synthetic / some["path"]).read_bytes()).hexdigest()
    n_links = scalar(store, "SELECT COUNT(*) FROM track_links")
    assert n_links == sum(raws.values())
    runs = scalar(store, "SELECT COUNT(*) FROM runs WHERE kind = 'ingest'")
    assert runs == 1

    before = store.read_sql("SELECT * FROM tracks ORDER BY id")
    again = ingest(store, synthetic)
    assert again.describe().startswith(f"ingest of {synthetic} (medleydb): 0 new, 3 unchanged, 0 updated")
    assert again.ok and not again.changed_files
    assert scalar(store, "SELECT COUNT(*) FROM runs WHERE kind = 'ingest'") == 1  # nothing changed: no run
    assert store.read_sql("SELECT * FROM tracks ORDER BY id").equals(before)


def add_pair(store: Store, stem_id: int, raw_id: int, pair: str) -> list[int]:
    """Two segments forming a pair, as the segment stage would store them."""
    with store.session() as s:
        ids = []
        for track_id, role in ((stem_id, "stem"), (raw_id, "raw")):
            inst = s.execute(
                sa.text("SELECT instrument_id FROM tracks WHERE id = :i"), {"i": track_id}
            ).scalar()
            seg = Segment(
                track_id=track_id,
                instrument_id=inst,
                role=role,
                pair=pair,
                start=0.0,
                duration=1.0,
                status="extracted",
            )
            s.add(seg)
            s.flush()
            ids.append(seg.id)
        return ids


def add_run(store: Store, segment_ids: list[int]) -> int:
    run_id = store.start_run("selection", group="bass")
    store.finish_run(run_id)
    with store.session() as s:
        s.add_all([RunSegment(run_id=run_id, segment_id=i) for i in segment_ids])
    return run_id


def test_changed_wav_marks_exactly_its_dependents_stale(store, corpus):
    ingest(store, corpus)
    links = store.read_sql(
        """SELECT l.stem_track_id, l.raw_track_id, m.name, r.path AS raw_path
           FROM track_links l JOIN tracks r ON r.id = l.raw_track_id
           JOIN multitracks m ON m.id = r.multitrack_id ORDER BY m.name, r.code"""
    )
    per_stem = links.groupby("stem_track_id")
    # a stem with at least two raws: its pair uses one raw, and we change the other
    stem_id = next(k for k, g in per_stem if len(g) >= 2)
    raws = links[links["stem_track_id"] == stem_id]
    paired_raw, changed_raw = int(raws["raw_track_id"].iloc[0]), int(raws["raw_track_id"].iloc[1])
    other = links[links["name"] != raws["name"].iloc[0]].iloc[0]
    affected = add_pair(store, int(stem_id), paired_raw, "affected")
    unaffected = add_pair(store, int(other["stem_track_id"]), int(other["raw_track_id"]), "other")
    run_affected = add_run(store, affected + unaffected)
    run_unaffected = add_run(store, unaffected)

    path = corpus / raws["raw_path"].iloc[1]
    audio, sr = sf.read(path)
    sf.write(path, audio * 0.5, sr, subtype="PCM_24")

    summary = ingest(store, corpus)
    assert summary.changed_files == [raws["raw_path"].iloc[1]]
    assert (summary.stale_segments, summary.stale_runs) == (2, 1)
    # the track itself describes the new content and stays usable: the segment stage redoes
    # the stale pair with it
    assert store.read_sql("SELECT id FROM tracks WHERE stale").empty
    assert set(store.read_sql("SELECT id FROM segments WHERE stale")["id"]) == set(affected)
    assert set(store.read_sql("SELECT id FROM runs WHERE stale")["id"]) == {run_affected}
    assert run_unaffected not in set(store.read_sql("SELECT id FROM runs WHERE stale")["id"])
    new_hash = scalar(store, "SELECT content_hash FROM tracks WHERE id = :i", i=changed_raw)
    assert new_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert status(store)["pending"].set_index("work")["count"]["stale segments to redo"] == 2
    # and once recorded, the change is not news any more
    assert ingest(store, corpus).changed_files == []


def test_disappeared_file_is_reported_not_deleted(store, corpus):
    ingest(store, corpus)
    n_tracks = scalar(store, "SELECT COUNT(*) FROM tracks")
    victim = sorted(corpus.glob("*/*_RAW/*.wav"))[0]
    victim.unlink()
    summary = ingest(store, corpus)
    rel = victim.relative_to(corpus).as_posix()
    assert summary.disappeared_files == [rel] and rel in summary.missing_files
    assert scalar(store, "SELECT COUNT(*) FROM tracks") == n_tracks
    row = store.read_sql(
        "SELECT audio_status, status_reason, content_hash FROM tracks WHERE path = :p", {"p": rel}
    )
    assert row["audio_status"][0] == "missing" and row["status_reason"][0] == "file not found"
    assert row["content_hash"][0]  # what the file was is kept
    assert "1 missing" in summary.describe()


# -- hostile input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_paths_outside_the_corpus_are_rejected(store, corpus, tmp_path, how):
    name = first_multitrack(corpus)
    outside = tmp_path / "secret.wav"
    shutil.copy(sorted(corpus.glob("*/*_RAW/*.wav"))[0], outside)
    if how == "symlink":
        stem_file = sorted((corpus / name).glob("*_STEMS/*.wav"))[0]
        stem_file.unlink()
        stem_file.symlink_to(outside)
        bad = stem_file.name
    else:
        bad = "../../secret.wav" if how == "dotdot" else str(outside)
        edit_metadata(corpus, name, lambda m: m["stems"]["S01"].__setitem__("filename", bad))
    summary = ingest(store, corpus)
    assert not summary.ok
    assert len(summary.rejected) == 1
    item, reason = summary.rejected[0]
    assert item == name and bad in reason
    assert len(summary.new_multitracks) == 2  # the others are ingested
    assert scalar(store, "SELECT COUNT(*) FROM multitracks WHERE name = :n", n=name) == 0


def test_malformed_yaml_and_missing_keys_name_the_file_and_key(store, corpus):
    names = [p.parent.name for p in metadata_files(corpus)]
    broken = corpus / names[0] / f"{names[0]}_METADATA.yaml"
    broken.write_text("artist: x\nstems: [unclosed\n")
    edit_metadata(corpus, names[1], lambda m: m["stems"]["S01"].pop("filename"))
    summary = ingest(store, corpus)
    reasons = dict(summary.rejected)
    assert str(broken) in reasons[names[0]] and "malformed YAML" in reasons[names[0]]
    assert f"{names[1]}_METADATA.yaml" in reasons[names[1]] and "'stems.S01.filename'" in reasons[names[1]]
    assert summary.new_multitracks == [names[2]]


def test_truncated_wav_is_unreadable_and_cli_exits_nonzero(store, db_url, corpus):
    victim = sorted(corpus.glob("*/*_STEMS/*.wav"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    store.engine.dispose()  # let the CLI open the DuckDB file
    result = runner.invoke(app, ["ingest", str(corpus), "--db", db_url])
    assert result.exit_code == 1, result.output
    assert "3 new" in result.output and "1 unreadable" in result.output
    assert "unreadable:" in result.output and "truncated" in result.output
    assert "Traceback" not in result.output
    rows = store.read_sql("SELECT path, audio_status, status_reason FROM tracks")
    bad = rows[rows["audio_status"] != "present"]
    assert list(bad["path"]) == [victim.relative_to(corpus).as_posix()]
    assert bad["audio_status"].iloc[0] == "unreadable" and "truncated" in bad["status_reason"].iloc[0]


# -- session folders ---------------------------------------------------------------------------------
def write_session(root: Path, synthetic: Path, files: list[str], manifest: str | None = None) -> None:
    source = sorted(synthetic.glob("*/*_RAW/*.wav"))[0]
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / rel)
    if manifest is not None:
        (root / files[0].split("/")[0] / "session.yaml").write_text(textwrap.dedent(manifest))


def test_folder_format_ingests(store, synthetic, tmp_path):
    root = tmp_path / "sessions"
    write_session(
        root,
        synthetic,
        [
            "song1/stems/electric bass/bass.wav",
            "song1/raw/electric bass/di.wav",
            "song1/raw/electric bass/amp.wav",
            "song1/mix.wav",
        ],
    )
    write_session(
        root,
        synthetic,
        [
            "song2/stems/clean electric guitar/rhythm.wav",
            "song2/stems/clean electric guitar/lead.wav",
            "song2/raw/clean electric guitar/r-amp.wav",
            "song2/raw/clean electric guitar/r-di.wav",
            "song2/raw/clean electric guitar/l-amp.wav",
        ],
        manifest="""\
        artist: The Examples
        title: Second Song
        genre: Rock
        studio: Room B
        stems:
          clean electric guitar/rhythm.wav: [clean electric guitar/r-amp.wav, clean electric guitar/r-di.wav]
          clean electric guitar/lead.wav: [clean electric guitar/l-amp.wav]
        """,
    )
    # two stems of one instrument and no manifest: which raw made which is unknown
    write_session(
        root, synthetic, ["song3/stems/piano/a.wav", "song3/stems/piano/b.wav", "song3/raw/piano/p.wav"]
    )
    summary = ingest(store, root, format="folder")
    assert summary.new_multitracks == ["song1", "song2"]
    assert [item for item, _ in summary.rejected] == ["song3"] and "session.yaml" in summary.rejected[0][1]
    links = store.read_sql(
        """SELECT m.name, s.code AS stem, r.code AS raw FROM track_links l
           JOIN tracks s ON s.id = l.stem_track_id JOIN tracks r ON r.id = l.raw_track_id
           JOIN multitracks m ON m.id = s.multitrack_id ORDER BY m.name, stem, raw"""
    )
    assert links.values.tolist() == [
        ["song1", "stems/electric bass/bass.wav", "raw/electric bass/amp.wav"],
        ["song1", "stems/electric bass/bass.wav", "raw/electric bass/di.wav"],
        ["song2", "stems/clean electric guitar/lead.wav", "raw/clean electric guitar/l-amp.wav"],
        ["song2", "stems/clean electric guitar/rhythm.wav", "raw/clean electric guitar/r-amp.wav"],
        ["song2", "stems/clean electric guitar/rhythm.wav", "raw/clean electric guitar/r-di.wav"],
    ]
    song2 = store.read_sql("SELECT artist, title, genre, extra FROM multitracks WHERE name = 'song2'")
    assert song2[["artist", "title", "genre"]].values.tolist() == [["The Examples", "Second Song", "Rock"]]
    assert "Room B" in song2["extra"][0]
    assert scalar(store, "SELECT COUNT(*) FROM tracks WHERE kind = 'mix'") == 1
    assert len(ingest(store, root, format="folder").unchanged_multitracks) == 2


# -- the command line ---------------------------------------------------------------------------------
def test_cli_ingest_status_report(db_url, tmp_path):
    metadata = tmp_path / "metadata"  # 40 real metadata files: the 330 are tested above
    metadata.mkdir()
    files = sorted(require_shared(MEDLEYDB_METADATA).glob("*_METADATA.yaml"))[::8][:40]
    for file in files:
        shutil.copy(file, metadata)
    raws, stems, _ = count_from_yaml(files)
    assert runner.invoke(app, ["init", "--db", db_url]).exit_code == 0
    result = runner.invoke(
        app,
        ["ingest", str(tmp_path / "audio"), "--metadata", str(metadata), "--metadata-only", "--db", db_url],
    )
    assert result.exit_code == 1 and "no corpus directory" in result.output  # no audio dir yet
    (tmp_path / "audio").mkdir()
    result = runner.invoke(
        app,
        ["ingest", str(tmp_path / "audio"), "--metadata", str(metadata), "--metadata-only", "--db", db_url],
    )
    assert result.exit_code == 0, result.output
    assert f"{len(files)} new" in result.output
    result = runner.invoke(app, ["status", "--db", db_url, "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "electric bass" in result.output and "not checked (metadata only)" in result.output
    result = runner.invoke(app, ["report", "table2", "--group", "vocal", "--format", "csv", "--db", db_url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "group_name,instrument,raw,stem"
    assert lines[1:] == [
        f"vocal,{label},{raws[label]},{stems[label]}"
        for label in sorted(("female singer", "male rapper", "male singer"))
        if raws[label] or stems[label]
    ]
    # user errors: one line, non-zero, no traceback
    result = runner.invoke(app, ["ingest", "/no/such/corpus", "--db", db_url])
    assert result.exit_code == 1 and result.output.strip() == "error: no corpus directory at /no/such/corpus"
    result = runner.invoke(app, ["ingest", str(metadata), "--format", "folder", "--db", db_url])
    assert result.exit_code == 1 and result.output.startswith("error: no multitracks found")


def test_cli_synth_writes_a_corpus(tmp_path):
    result = runner.invoke(
        app, ["synth", str(tmp_path / "c"), "--multitracks", "1", "--seconds", "1", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 1 multitracks" in result.output
    assert len(metadata_files(tmp_path / "c")) == 1


# -- kill -9 -----------------------------------------------------------------------------------------------
KILLER = """
import os, signal, sys
import stemstore.corpus.ingest as ing
from stemstore.store.connection import Store

ing.BATCH_MULTITRACKS = 1  # one multitrack a transaction, to kill inside the second
calls = []
original = ing._write_links

def write_links_then_die(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # tracks of the second multitrack are written, its transaction is open
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)

ing._write_links = write_links_then_die
store = Store.open(sys.argv[1])
ing.ingest(store, sys.argv[2])
"""


def test_kill_9_mid_ingest_leaves_whole_multitracks_and_rerun_completes(store, db_url, corpus):
    store.engine.dispose()  # the subprocess needs the DuckDB file
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, db_url, str(corpus)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    expected = {p.parent.name: count_from_yaml([p])[2] for p in metadata_files(corpus)}
    stored = store.read_sql(
        "SELECT m.name, COUNT(t.id) AS n FROM multitracks m "
        "LEFT JOIN tracks t ON t.multitrack_id = m.id GROUP BY m.name"
    )
    assert len(stored) == 1  # the first multitrack, whole; nothing of the second
    assert all(expected[n] == k for n, k in zip(stored["name"], stored["n"]))
    store.engine.dispose()
    summary = ingest(store, corpus)
    assert len(summary.new_multitracks) == 2 and len(summary.unchanged_multitracks) == 1
    stored = store.read_sql(
        "SELECT m.name, COUNT(t.id) AS n FROM multitracks m "
        "JOIN tracks t ON t.multitrack_id = m.id GROUP BY m.name"
    )
    assert dict(zip(stored["name"], stored["n"])) == expected


BOMB = """artist: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: [*h, *h, *h, *h, *h, *h, *h, *h, *h]
stems: {}
stem_dir: x
raw_dir: y
"""


def test_yaml_alias_bomb_is_rejected_and_ingest_goes_on(store, corpus):
    names = [p.parent.name for p in metadata_files(corpus)]
    bomb = corpus / names[0] / f"{names[0]}_METADATA.yaml"
    bomb.write_text(BOMB)
    summary = ingest(store, corpus)
    assert summary.rejected == [
        (names[0], f"{bomb}: uses YAML aliases (*name), which metadata may not; write the values out")
    ]
    assert summary.new_multitracks == names[1:]


def test_moved_corpus_reingests_from_its_new_place(store, corpus, tmp_path):
    """On DuckDB too: the corpus's root moves, no key is updated (DuckDB's foreign-key limits)."""
    assert ingest(store, corpus).ok
    before = store.read_sql("SELECT id, name, corpus_id FROM multitracks ORDER BY id")
    moved = Path(shutil.move(corpus, tmp_path / "elsewhere"))
    summary = ingest(store, moved)
    assert summary.ok and summary.relocated_from == str(corpus)
    assert len(summary.unchanged_multitracks) == 3 and not summary.new_multitracks
    assert store.read_sql("SELECT id, name, corpus_id FROM multitracks ORDER BY id").equals(before)
    roots = store.read_sql("SELECT root FROM corpora")["root"].tolist()
    assert roots == [str(moved)]
    files = store.read_sql("SELECT metadata_file FROM multitracks")["metadata_file"]
    assert all(f.startswith(str(moved) + "/") for f in files)


def test_copied_corpus_reingests_from_the_copy(store, corpus, tmp_path):
    assert ingest(store, corpus).ok
    copy = Path(shutil.copytree(corpus, tmp_path / "copy"))
    summary = ingest(store, copy)
    assert summary.ok and summary.relocated_from == str(corpus) and len(summary.unchanged_multitracks) == 3
    assert store.read_sql("SELECT root FROM corpora")["root"].tolist() == [str(copy)]


def test_a_second_corpus_with_the_same_names_is_rejected(store, corpus, tmp_path):
    assert ingest(store, corpus).ok
    other = Path(shutil.copytree(corpus, tmp_path / "other"))
    name = first_multitrack(other)
    edit_metadata(other, name, lambda m: m.__setitem__("genre", "Polka"))
    summary = ingest(store, other)
    assert not summary.ok and summary.relocated_from is None
    reasons = dict(summary.rejected)
    assert len(reasons) == 3 and "already belongs to corpus" in reasons[name]
    assert f"stemstore corpus relocate {corpus} {other}" in reasons[name]
    assert store.read_sql("SELECT root FROM corpora")["root"].tolist() == [str(corpus)]


def test_cli_corpus_relocate(store, db_url, corpus, tmp_path):
    assert ingest(store, corpus).ok
    store.engine.dispose()
    moved = Path(shutil.move(corpus, tmp_path / "moved"))
    result = runner.invoke(app, ["corpus", "relocate", str(corpus), str(moved), "--db", db_url])
    assert result.exit_code == 0, result.output
    assert f"relocated from {corpus} to {moved}: 3 multitracks" in result.output
    assert "3 hashed and unchanged" in result.output
    assert store.read_sql("SELECT root FROM corpora")["root"].tolist() == [str(moved)]
    summary = ingest(store, moved)
    assert summary.ok and len(summary.unchanged_multitracks) == 3 and summary.relocated_from is None
