"""Ingest: record multitrack corpora in the store, incrementally and safely.

Two layouts are read, one module each: :mod:`stemstore.corpus.medleydb` (``format="medleydb"``)
and :mod:`stemstore.corpus.folder` (``format="folder"``), whose docstrings describe them.

What ingest records: the multitrack (artist, title, genre, origin; every other top-level field
of the metadata in ``multitracks.extra``), its mix, stems and raw tracks with their instrument
labels (a list in the metadata is kept whole, the first label is the primary one that analyses
use), which raws made which stem, and for each audio file its sha256, sample rate, channels and
duration.

Incremental and safe:

* Multitracks are written whole, a batch of them per transaction: an ingest killed at any
  point leaves whole multitracks only, and running it again completes the rest.
* Ingesting the same corpus again changes nothing ("0 new"). A file whose size and
  modification time are unchanged is not read again; a multitrack whose metadata and files are
  unchanged is not even parsed.
* A file whose content changed gets its new facts; the segments made from it (and from its
  stem's pair) and the runs that used those segments are marked stale, so that ``segment``
  makes them anew. (``tracks.stale`` means something else: the metadata no longer names the
  track.)
* A file that disappeared is reported and recorded as ``missing``; nothing is deleted.
* A metadata filename that would resolve outside the corpus root (``..``, an absolute path,
  a symlink pointing out) rejects its multitrack, naming the multitrack and the file.
  Malformed YAML and missing keys reject the file, naming the file and the key. Unreadable
  or corrupt audio (including a WAV truncated after its header) is recorded ``unreadable``
  with the reason. Ingest goes on with the rest either way; :attr:`IngestSummary.ok` says
  whether the user has something to fix.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterable

import pandas as pd
import sqlalchemy as sa

from stemstore.corpus import folder, medleydb
from stemstore.corpus.audio_files import AudioFacts, inspect_files, stat_stamp
from stemstore.corpus.manifest import InsideChecker, MultitrackSpec, Rejected, Source
from stemstore.enums import IngestFormat
from stemstore.errors import StemstoreError
from stemstore.store.schema import (
    JSONText,
    Corpus,
    Multitrack,
    MultitrackSource,
    Run,
    RunSegment,
    Segment,
    Track,
    TrackFile,
    TrackLink,
    utcnow,
)
from stemstore.store.connection import Store, describe_error, instrument_ids
from stemstore.enums import AudioStatus, RunKind

FORMATS = tuple(IngestFormat.values())
NOT_CHECKED = "not checked (metadata only)"
NOT_IN_METADATA = "no longer in the metadata"
#: A batch of whole multitracks is written in one transaction when it holds this many, or when
#: its first multitrack was inspected this many seconds ago (so slow audio commits regularly).
BATCH_MULTITRACKS = 25
BATCH_SECONDS = 2.0

#: progress(done, total, multitrack name), called after each multitrack.
ProgressCallback = Callable[[int, int, str], None]


# -- what ingest reports ------------------------------------------------------------------------
@dataclass
class IngestSummary:
    """What one ingest did and found. ``ok`` is False when something needs the user's attention
    (a rejected metadata file or multitrack, unreadable audio)."""

    root: str
    format: str
    metadata_only: bool = False
    new_multitracks: list[str] = field(default_factory=list)
    unchanged_multitracks: list[str] = field(default_factory=list)
    updated_multitracks: list[str] = field(default_factory=list)
    new_tracks: int = 0
    changed_files: list[str] = field(default_factory=list)  # content changed since last ingest
    missing_files: list[str] = field(default_factory=list)  # named in metadata, not on disk
    disappeared_files: list[str] = field(default_factory=list)  # were present, now missing
    unreadable_files: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)
    stale_tracks: int = 0
    stale_segments: int = 0
    stale_runs: int = 0
    run_id: int | None = None
    relocated_from: str | None = None  # the corpus was found moved here from this root

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.unreadable_files

    @property
    def changed_anything(self) -> bool:
        return bool(self.new_multitracks or self.updated_multitracks)

    def counts(self) -> dict[str, int]:
        return {
            "new_multitracks": len(self.new_multitracks),
            "unchanged_multitracks": len(self.unchanged_multitracks),
            "updated_multitracks": len(self.updated_multitracks),
            "new_tracks": self.new_tracks,
            "changed_files": len(self.changed_files),
            "missing_files": len(self.missing_files),
            "disappeared_files": len(self.disappeared_files),
            "unreadable_files": len(self.unreadable_files),
            "rejected": len(self.rejected),
            "stale_tracks": self.stale_tracks,
            "stale_segments": self.stale_segments,
            "stale_runs": self.stale_runs,
        }

    def describe(self) -> str:
        """The one-line summary, e.g. ``ingest of /data/medleydb (medleydb): 0 new, 20
        unchanged, 0 updated multitracks; 0 changed, 0 missing, 0 unreadable files; 0
        rejected``."""
        audio = (
            "audio not checked (metadata only)"
            if self.metadata_only
            else f"{len(self.changed_files)} changed, {len(self.missing_files)} missing, "
            f"{len(self.unreadable_files)} unreadable files"
        )
        line = (
            f"ingest of {self.root} ({self.format}): {len(self.new_multitracks)} new, "
            f"{len(self.unchanged_multitracks)} unchanged, {len(self.updated_multitracks)} "
            f"updated multitracks; {audio}; {len(self.rejected)} rejected"
        )
        if self.relocated_from:
            line += f"; the corpus moved here from {self.relocated_from}"
        if self.stale_tracks or self.stale_segments or self.stale_runs:
            line += (
                f"; marked stale: {self.stale_tracks} tracks, {self.stale_segments} "
                f"segments, {self.stale_runs} runs"
            )
        return line

    def details(self, limit: int = 20) -> list[str]:
        """One line per problem (rejected items, unreadable, changed and missing files), at most
        ``limit`` per kind."""
        lines: list[str] = []

        def add(kind: str, items: list[str]) -> None:
            lines.extend(f"{kind}: {item}" for item in items[:limit])
            if len(items) > limit:
                lines.append(f"{kind}: ... and {len(items) - limit} more")

        add("rejected", [f"{item}: {reason}" for item, reason in self.rejected])
        add("unreadable", [f"{path}: {reason}" for path, reason in self.unreadable_files])
        add("changed", self.changed_files)
        add("disappeared", self.disappeared_files)
        if not self.metadata_only:
            add("missing", [p for p in self.missing_files if p not in set(self.disappeared_files)])
        return lines


# -- the entry point ----------------------------------------------------------------------------------
def ingest(
    store: Store,
    path: Path | str,
    format: str = IngestFormat.MEDLEYDB,
    metadata_dir: Path | str | None = None,
    metadata_only: bool = False,
    progress: ProgressCallback | None = None,
) -> IngestSummary:
    """Ingest the corpus at ``path``, incrementally (see the module docstring).

    Problems with single multitracks or files (rejected metadata, missing or unreadable audio)
    are reported in the summary, not raised.

    Parameters
    ----------
    store : Store
        The store to write to.
    path : str or pathlib.Path
        The corpus directory.
    format : {"medleydb", "folder"}, default="medleydb"
        The corpus layout (:mod:`stemstore.corpus.medleydb`, :mod:`stemstore.corpus.folder`).
    metadata_dir : str or pathlib.Path, optional
        MedleyDB only: a directory of ``*_METADATA.yaml`` files kept apart from the audio.
    metadata_only : bool, default=False
        Record what the metadata says without looking at the audio: new tracks get audio
        status ``missing``; audio facts already recorded are kept.
    progress : callable, optional
        ``progress(done, total, multitrack name)``, called after each multitrack.

    Returns
    -------
    IngestSummary
        What was done: new, changed and unchanged multitracks, rejections, missing and
        unreadable files, and the ingest run's id when something changed.

    Raises
    ------
    StemstoreError
        Only when nothing can be ingested at all: no such directory, an unknown format, or no
        multitracks found.
    """
    if format not in FORMATS:
        raise StemstoreError(f"unknown corpus format {format!r} (formats: {', '.join(FORMATS)})")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise StemstoreError(f"no corpus directory at {root}")
    root = root.resolve()
    if metadata_dir is not None and format != IngestFormat.MEDLEYDB:
        raise StemstoreError("--metadata is for the medleydb format only")

    summary = IngestSummary(root=str(root), format=format, metadata_only=metadata_only)
    if format == IngestFormat.MEDLEYDB:
        meta = Path(metadata_dir).expanduser() if metadata_dir is not None else None
        if meta is not None and not meta.is_dir():
            raise StemstoreError(f"no metadata directory at {meta}")
        sources = medleydb.find_sources(root, meta.resolve() if meta else None, summary.rejected)
    else:
        sources = folder.find_sources(root, summary.rejected)
    if not sources and not summary.rejected:
        hint = (
            "no <name>/<name>_METADATA.yaml (or --metadata DIR)"
            if format == IngestFormat.MEDLEYDB
            else "no <session>/stems/ or <session>/raw/ folders"
        )
        raise StemstoreError(f"no multitracks found in {root}: {hint}")

    known = _known_multitracks(store, [src.name for src in sources])
    corpus_id = _moved_corpus(store, root, format, sources, known, summary)
    if corpus_id is None:
        corpus_id = _corpus_id(store, root, format, create=False)  # made when it gets a multitrack
    params = {
        "path": str(root),
        "format": format,
        "metadata_dir": str(metadata_dir) if metadata_dir else None,
        "metadata_only": metadata_only,
    }
    batch: list[tuple[MultitrackSpec, dict[str, AudioFacts]]] = []
    batch_started = 0.0
    done = 0

    def flush() -> None:
        nonlocal done, corpus_id
        if not batch:
            return
        if corpus_id is None:
            corpus_id = _corpus_id(store, root, format)
        _write_batch(store, corpus_id, batch, summary)
        if summary.run_id is None and summary.changed_anything:
            # an ingest run is recorded when something changed (refreshed file stamps alone
            # are not a change), so a repeated ingest leaves no trace
            summary.run_id = run.start()
        for spec, _ in batch:
            done += 1
            if progress:
                progress(done, len(sources), spec.name)
        batch.clear()

    with store.run(RunKind.INGEST, params=params, deferred=True, failure_message=describe_error) as run:
        run.counts = summary.counts
        for source in sources:
            item = _prepare(root, corpus_id, format, source, known.get(source.name), metadata_only, summary)
            if item is None:  # unchanged or rejected: nothing to write
                done += 1
                if progress:
                    progress(done, len(sources), source.name)
                continue
            if not batch:
                batch_started = time.monotonic()
            batch.append(item)
            if len(batch) >= BATCH_MULTITRACKS or time.monotonic() - batch_started >= BATCH_SECONDS:
                flush()
        flush()
        run.message = summary.describe()
    return summary


def _prepare(
    root: Path,
    corpus_id: int | None,
    format: str,
    source: Source,
    known: dict | None,
    metadata_only: bool,
    summary: IngestSummary,
) -> tuple[MultitrackSpec, dict[str, AudioFacts]] | None:
    """Get one multitrack ready to write: None if nothing changed (or it is rejected), else
    what the metadata says and the facts of its files."""
    if known is not None and known["corpus_id"] != corpus_id:
        # Names are unique across the store. A whole corpus that moved was relocated before
        # (see _moved_corpus); one multitrack is never moved between corpora on its own.
        summary.rejected.append(
            (
                source.name,
                f"a multitrack of this name already belongs to corpus {known['corpus']}"
                + ("" if known["corpus_root"] == known["corpus"] else f" (now at {known['corpus_root']})")
                + "; rename it to ingest it from here, or if that "
                f"corpus moved here run 'stemstore corpus relocate {known['corpus_root']} {root}'",
            )
        )
        return None
    stored_tracks = known["tracks"] if known else {}
    if (
        known is not None
        and known["corpus_id"] == corpus_id
        and known["metadata_hash"] == source.metadata_hash
    ):
        if metadata_only or all(
            stat_stamp(root / t["path"]) == t["stamp"] and t["status_reason"] != NOT_CHECKED
            for t in stored_tracks.values()
            if t["path"]
        ):
            summary.unchanged_multitracks.append(source.name)
            _report_stored_problems(stored_tracks, metadata_only, summary)
            return None
    try:
        spec = source.parse()
        inside = InsideChecker(root)
        for track in spec.tracks:
            inside.check(track.path)
    except Rejected as exc:
        summary.rejected.append((source.name, str(exc)))
        return None
    facts = {} if metadata_only else inspect_files(root, spec.tracks, stored_tracks)
    return spec, facts


# -- the store ------------------------------------------------------------------------------------------
def _corpus_id(store: Store, root: Path, format: str, create: bool = True) -> int | None:
    """The corpus at ``root``, created (unless not ``create``: None) on first ingest and named by
    its resolved path then (a corpus relocated since keeps its name; a new one at its old path
    gets a numbered name)."""
    with store.session() as s:
        corpus = s.scalar(sa.select(Corpus).where(Corpus.root == str(root)).order_by(Corpus.id).limit(1))
        if corpus is None:
            if not create:
                return None
            taken = set(s.scalars(sa.select(Corpus.name).where(Corpus.name.startswith(str(root)))))
            name = str(root)
            n = 1
            while name in taken:
                n += 1
                name = f"{root} ({n})"
            corpus = Corpus(name=name, root=str(root), format=format)
            s.add(corpus)
            s.flush()
        elif corpus.format != format:
            raise StemstoreError(f"{root} was ingested as format {corpus.format}, not {format}")
        return corpus.id


def _moved_corpus(
    store: Store,
    root: Path,
    format: str,
    sources: list[Source],
    known: dict[str, dict],
    summary: IngestSummary,
) -> int | None:
    """The id of the MedleyDB corpus that moved (or was copied) to ``root``, relocated here;
    None when this is not such a corpus.

    It is one when no corpus lives at ``root`` yet, every multitrack found here that the store
    knows belongs to one other MedleyDB corpus, that corpus has no multitrack that is not found
    here, and either its old root is gone or every metadata file here is unchanged (a copy).
    """
    if format != "medleydb" or not known:
        return None
    with store.engine.connect() as conn:
        if conn.execute(sa.select(Corpus.id).where(Corpus.root == str(root))).first() is not None:
            return None
    owners = {k["corpus_id"] for k in known.values()}
    if len(owners) != 1:
        return None
    (owner,) = owners
    some = next(iter(known.values()))
    if some["format"] != "medleydb":
        return None
    with store.engine.connect() as conn:
        theirs = set(conn.execute(sa.select(Multitrack.name).where(Multitrack.corpus_id == owner)).scalars())
    if not theirs <= {src.name for src in sources}:
        return None
    old_root = some["corpus_root"]
    hashes = {src.name: src.metadata_hash for src in sources}
    copied = all(k["metadata_hash"] == hashes[name] for name, k in known.items())
    if old_root and Path(old_root).exists() and not copied:
        return None
    from stemstore.corpus.relocate import move_root

    with store.session() as s:
        move_root(s.connection(), owner, old_root, str(root))
    summary.relocated_from = old_root
    return owner


_TRACK_STATE = """
SELECT t.id, t.multitrack_id, t.kind, t.code, t.instrument_id, t.labels, t.path, t.content_hash,
       t.sample_rate, t.channels, t.duration, t.audio_status, t.status_reason, t.stale,
       f.file_size, f.file_mtime_ns
FROM tracks t LEFT JOIN track_files f ON f.track_id = t.id
WHERE t.multitrack_id IN ({ids}) AND t.code NOT LIKE 'import/%'
"""


def _track_state(
    conn: sa.Connection, multitrack_ids: Iterable[int]
) -> dict[int, dict[tuple[str, str], dict]]:
    """Stored tracks of multitracks: multitrack id -> (kind, code) -> columns (+ ``stamp``)."""
    ids = [int(i) for i in multitrack_ids]
    out: dict[int, dict[tuple[str, str], dict]] = {i: {} for i in ids}
    if not ids:
        return out
    result = conn.execute(sa.text(_TRACK_STATE.format(ids=", ".join(map(str, ids)))))
    for row in result.mappings():
        track = dict(row)
        size, mtime = track.pop("file_size"), track.pop("file_mtime_ns")
        track["stamp"] = None if size is None else (int(size), int(mtime))
        track["labels"] = None if track["labels"] is None else json.loads(track["labels"])
        out[track["multitrack_id"]][(track["kind"], track["code"])] = track
    return out


def _known_multitracks(store: Store, names: list[str]) -> dict[str, dict]:
    """Stored state of the multitracks of these names, read in two queries."""
    if not names:
        return {}
    with store.engine.connect() as conn:
        rows = (
            conn.execute(
                sa.select(
                    Multitrack.id,
                    Multitrack.name,
                    Multitrack.corpus_id,
                    Corpus.name.label("corpus"),
                    Corpus.root.label("corpus_root"),
                    Corpus.format,
                    MultitrackSource.metadata_hash,
                )
                .join(Corpus, Corpus.id == Multitrack.corpus_id)
                .outerjoin(MultitrackSource, MultitrackSource.multitrack_id == Multitrack.id)
                .where(Multitrack.name.in_(names))
            )
            .mappings()
            .all()
        )
        tracks = _track_state(conn, [r["id"] for r in rows])
    return {r["name"]: {**r, "tracks": tracks[r["id"]]} for r in rows}


def _report_stored_problems(tracks: dict, metadata_only: bool, summary: IngestSummary) -> None:
    """An unchanged multitrack's audio problems are still problems: report them again."""
    if metadata_only:
        return
    for t in tracks.values():
        if t["audio_status"] == AudioStatus.MISSING and t["path"]:
            summary.missing_files.append(t["path"])
        elif t["audio_status"] == AudioStatus.UNREADABLE:
            summary.unreadable_files.append((t["path"], t["status_reason"] or "unreadable"))


def _write_batch(
    store: Store,
    corpus_id: int,
    batch: list[tuple[MultitrackSpec, dict[str, AudioFacts]]],
    summary: IngestSummary,
) -> None:
    """Write whole multitracks in one transaction: insert or update each, its tracks, links and
    file stamps, and mark stale whatever was derived from a file that changed.

    A batch is a few multitracks rather than one so that a large metadata-only ingest takes a
    dozen statements per batch rather than per multitrack; the transaction still holds whole
    multitracks only, so an interrupted ingest never leaves one half-written.
    """
    specs = [spec for spec, _ in batch]
    facts = {spec.name: f for spec, f in batch}
    outcome = {spec.name: "unchanged" for spec in specs}
    with store.session() as s:
        conn = s.connection()
        names = [spec.name for spec in specs]
        existing = {mt.name: mt for mt in s.scalars(sa.select(Multitrack).where(Multitrack.name.in_(names)))}
        new_mts = [spec for spec in specs if spec.name not in existing]
        _insert_rows(
            store,
            conn,
            Multitrack,
            [
                {
                    "corpus_id": corpus_id,
                    "name": spec.name,
                    "metadata_file": spec.metadata_file,
                    "extra": spec.extra,
                    "ingested_at": utcnow(),
                    **spec.fields,
                }
                for spec in new_mts
            ],
        )
        for spec in specs:
            mt = existing.get(spec.name)
            if mt is None:
                outcome[spec.name] = "new"
                continue
            wanted = {
                "corpus_id": corpus_id,
                "metadata_file": spec.metadata_file,
                "extra": spec.extra,
                **spec.fields,
            }
            for key, value in wanted.items():
                if getattr(mt, key) != value:
                    setattr(mt, key, value)
                    outcome[spec.name] = "updated"
        s.flush()
        mt_ids = dict(
            s.execute(sa.select(Multitrack.name, Multitrack.id).where(Multitrack.name.in_(names))).all()
        )
        conn.execute(sa.delete(MultitrackSource).where(MultitrackSource.multitrack_id.in_(mt_ids.values())))
        _insert_rows(
            store,
            conn,
            MultitrackSource,
            [{"multitrack_id": mt_ids[spec.name], "metadata_hash": spec.metadata_hash} for spec in specs],
        )

        stored_all = _track_state(conn, [mt_ids[n] for n in existing])
        labels = [t.labels[0] for spec in specs for t in spec.tracks if t.labels]
        inst_ids = instrument_ids(s, labels) if labels else {}
        new_rows: list[dict] = []
        stale_ids: set[int] = set()
        stamps: dict[tuple[int, str], tuple[int, int]] = {}  # (multitrack id, code) -> stamp
        for spec in specs:
            mt_id = mt_ids[spec.name]
            stored = dict(stored_all.get(mt_id, {}))
            for track in spec.tracks:
                fact = facts[spec.name].get(track.path)
                values: dict[str, Any] = {
                    "kind": track.kind,
                    "code": track.code,
                    "path": track.path,
                    "labels": track.labels,
                    "instrument_id": inst_ids[track.labels[0]] if track.labels else None,
                }
                if fact is not None:
                    values.update(
                        audio_status=fact.status,
                        status_reason=fact.reason,
                        content_hash=fact.content_hash,
                        sample_rate=fact.sample_rate,
                        channels=fact.channels,
                        duration=fact.duration,
                    )
                    if fact.stamp is not None:
                        stamps[(mt_id, track.code)] = fact.stamp
                previous = stored.pop((track.kind, track.code), None)
                if previous is None:
                    if fact is None:
                        values.update(audio_status=AudioStatus.MISSING, status_reason=NOT_CHECKED)
                    new_rows.append(
                        {**dict.fromkeys(_TRACK_COLUMNS), "multitrack_id": mt_id, "stale": False, **values}
                    )
                    _note_file(track.path, fact, None, summary)
                    if outcome[spec.name] == "unchanged":
                        outcome[spec.name] = "updated"
                    continue
                if fact is not None and fact.status == AudioStatus.MISSING and previous["content_hash"]:
                    # keep what the file was: if it comes back unchanged nothing derived is stale
                    values.update(
                        content_hash=previous["content_hash"],
                        sample_rate=previous["sample_rate"],
                        channels=previous["channels"],
                        duration=previous["duration"],
                    )
                content_changed = (
                    fact is not None
                    and fact.content_hash is not None
                    and previous["content_hash"] is not None
                    and fact.content_hash != previous["content_hash"]
                )
                label_changed = previous["instrument_id"] != values["instrument_id"]
                if content_changed or label_changed:
                    stale_ids.add(previous["id"])  # what was made from it is stale (below)
                updates = {k: v for k, v in values.items() if not _same(previous.get(k), v)}
                if updates:
                    conn.execute(sa.update(Track).where(Track.id == previous["id"]).values(**updates))
                    outcome[spec.name] = "updated"
                _note_file(track.path, fact, previous, summary)
                if content_changed:
                    summary.changed_files.append(track.path)
            # tracks the metadata no longer names: kept, but stale (not to be used any more),
            # and so is what was made from them
            for previous in stored.values():
                if previous["status_reason"] != NOT_IN_METADATA:
                    conn.execute(
                        sa.update(Track)
                        .where(Track.id == previous["id"])
                        .values(status_reason=NOT_IN_METADATA, stale=True)
                    )
                    stale_ids.add(previous["id"])
                    summary.stale_tracks += 1
                    outcome[spec.name] = "updated"

        _insert_rows(store, conn, Track, new_rows)
        summary.new_tracks += len(new_rows)
        track_ids = {
            (mt, code): i
            for i, mt, code in s.execute(
                sa.select(Track.id, Track.multitrack_id, Track.code).where(
                    Track.multitrack_id.in_(mt_ids.values()), Track.code.not_like("import/%")
                )
            )
        }
        links = {
            (track_ids[(mt_ids[spec.name], a)], track_ids[(mt_ids[spec.name], b)])
            for spec in specs
            for a, b in spec.links
        }
        for name in _write_links(store, s, list(mt_ids.values()), links, {v: k for k, v in mt_ids.items()}):
            if outcome[name] == "unchanged":
                outcome[name] = "updated"
        if stamps:
            stamp_rows = [
                {"track_id": track_ids[key], "file_size": size, "file_mtime_ns": mtime}
                for key, (size, mtime) in stamps.items()
            ]
            conn.execute(
                sa.delete(TrackFile).where(TrackFile.track_id.in_([r["track_id"] for r in stamp_rows]))
            )
            _insert_rows(store, conn, TrackFile, stamp_rows)
        if stale_ids:
            segments_n, runs_n = mark_derived_stale(conn, stale_ids)
            summary.stale_segments += segments_n
            summary.stale_runs += runs_n

    for spec in specs:
        {
            "new": summary.new_multitracks,
            "updated": summary.updated_multitracks,
            "unchanged": summary.unchanged_multitracks,
        }[outcome[spec.name]].append(spec.name)


_TRACK_COLUMNS = (
    "multitrack_id",
    "kind",
    "code",
    "instrument_id",
    "labels",
    "path",
    "content_hash",
    "sample_rate",
    "channels",
    "duration",
    "audio_status",
    "status_reason",
    "stale",
)


def _insert_rows(store: Store, conn: sa.Connection, model, rows: list[dict]) -> None:
    """Insert rows (dicts with the same keys) in bulk inside the caller's transaction.

    DuckDB pays several milliseconds per statement and SQLAlchemy compiles a multi-row VALUES
    slowly, so on DuckDB the rows go in as one scan of a DataFrame; PostgreSQL gets an
    executemany, which SQLAlchemy and psycopg batch.
    """
    if not rows:
        return
    table = model.__table__
    if store.dialect != "duckdb":
        conn.execute(sa.insert(table), rows)
        return
    columns = list(rows[0])
    frame = pd.DataFrame({c: _duckdb_column(table.c[c], [r[c] for r in rows]) for c in columns})
    raw = conn.connection.driver_connection
    raw.register("_stemstore_rows", frame)
    try:
        names = ", ".join(columns)
        raw.execute(f"INSERT INTO {table.name} ({names}) SELECT {names} FROM _stemstore_rows")
    finally:
        raw.unregister("_stemstore_rows")


def _duckdb_column(column: sa.Column, values: list) -> pd.Series:
    """Values as a pandas column DuckDB reads with the right type (JSON as its text)."""
    if isinstance(column.type, JSONText):
        return pd.Series(
            [None if v is None else json.dumps(v, sort_keys=True, default=str) for v in values], dtype=object
        )
    if isinstance(column.type, (sa.Integer, sa.BigInteger)):
        return pd.Series(values, dtype="Int64")
    if isinstance(column.type, sa.Float):
        return pd.Series(values, dtype="float64")
    if isinstance(column.type, sa.Boolean):
        return pd.Series(values, dtype="boolean")
    return pd.Series(values, dtype=object)


def _write_links(
    store: Store, s, multitrack_ids: list[int], wanted: set[tuple[int, int]], names: dict[int, str]
) -> set[str]:
    """Make the multitracks' raw→stem links exactly ``wanted``; returns the names of the
    multitracks whose links changed."""
    have = {
        (a, b): mt
        for a, b, mt in s.execute(
            sa.select(TrackLink.stem_track_id, TrackLink.raw_track_id, Track.multitrack_id)
            .join(Track, Track.id == TrackLink.stem_track_id)
            .where(Track.multitrack_id.in_(multitrack_ids), Track.code.not_like("import/%"))
        )
    }
    gone = set(have) - wanted
    added = wanted - set(have)
    for stem_id, raw_id in gone:
        s.connection().execute(
            sa.delete(TrackLink).where(TrackLink.stem_track_id == stem_id, TrackLink.raw_track_id == raw_id)
        )
    _insert_rows(
        store, s.connection(), TrackLink, [{"stem_track_id": a, "raw_track_id": b} for a, b in sorted(added)]
    )
    changed = {have[key] for key in gone}
    if added:
        stem_mt = dict(
            s.execute(
                sa.select(Track.id, Track.multitrack_id).where(Track.id.in_([a for a, _ in added]))
            ).all()
        )
        changed |= {stem_mt[a] for a, _ in added}
    return {names[mt] for mt in changed}


def _same(stored: Any, new: Any) -> bool:
    """Stored and new values agree (floats to 1e-6: DuckDB keeps FLOAT as 32 bits)."""
    if isinstance(stored, float) and isinstance(new, float):
        return math.isclose(stored, new, rel_tol=1e-6)
    return stored == new


def _note_file(path: str, fact: AudioFacts | None, previous: dict | None, summary: IngestSummary) -> None:
    if fact is None:
        return
    if fact.status == AudioStatus.MISSING:
        summary.missing_files.append(path)
        if previous is not None and previous["audio_status"] == AudioStatus.PRESENT:
            summary.disappeared_files.append(path)
    elif fact.status == AudioStatus.UNREADABLE:
        summary.unreadable_files.append((path, fact.reason or "unreadable"))


def mark_derived_stale(conn: sa.Connection, track_ids: set[int]) -> tuple[int, int]:
    """Mark stale what was derived from these tracks; returns how many segments and runs were
    newly marked.

    Derived from a track: its segments; for a stem, the pair it forms with its raws; for a raw,
    its stem's pair too (the stem's window and the choice of raw depend on every raw of the
    stem). A pair is the segments sharing a ``pair`` value within the multitrack. Runs whose
    segment snapshot (run_segments) includes a stale segment are stale.

    The tracks themselves are not marked: their rows now describe the new content, and the
    segment stage redoes stale units with them. (``tracks.stale`` means "no longer to be
    used", which is what a track the metadata dropped is.)

    Plain Core statements without RETURNING: DuckDB refuses UPDATE ... RETURNING on a table
    that a foreign key references.
    """
    ids = sorted(int(i) for i in track_ids)
    stems_of_raws = sa.select(TrackLink.stem_track_id).where(TrackLink.raw_track_id.in_(ids))
    rows = conn.execute(
        sa.select(Segment.id, Segment.pair, Track.multitrack_id)
        .join(Track, Track.id == Segment.track_id)
        .where(sa.or_(Segment.track_id.in_(ids), Segment.track_id.in_(stems_of_raws)))
    ).all()
    segment_ids = {r.id for r in rows}
    pairs: dict[int, set[str]] = {}
    for r in rows:
        if r.pair is not None:
            pairs.setdefault(r.multitrack_id, set()).add(r.pair)
    for multitrack_id, names in pairs.items():
        segment_ids |= set(
            conn.execute(
                sa.select(Segment.id)
                .join(Track, Track.id == Segment.track_id)
                .where(Track.multitrack_id == multitrack_id, Segment.pair.in_(sorted(names)))
            ).scalars()
        )
    if not segment_ids:
        return 0, 0
    new_segments = list(
        conn.execute(
            sa.select(Segment.id).where(Segment.id.in_(sorted(segment_ids)), Segment.stale.is_(False))
        ).scalars()
    )
    run_ids = sa.select(RunSegment.run_id).where(RunSegment.segment_id.in_(sorted(segment_ids)))
    new_runs = list(
        conn.execute(sa.select(Run.id).where(Run.id.in_(run_ids), Run.stale.is_(False))).scalars()
    )
    if new_segments:
        conn.execute(sa.update(Segment).where(Segment.id.in_(new_segments)).values(stale=True))
    if new_runs:
        conn.execute(sa.update(Run).where(Run.id.in_(new_runs)).values(stale=True))
    return len(new_segments), len(new_runs)
