"""Ingest: record multitrack corpora in the store, incrementally and safely.

Two layouts are read.

**MedleyDB** (``format="medleydb"``)::

    <corpus>/<Artist>_<Title>/<Artist>_<Title>_METADATA.yaml
    <corpus>/<Artist>_<Title>/<stem_dir>/<stem files>
    <corpus>/<Artist>_<Title>/<raw_dir>/<raw files>
    <corpus>/<Artist>_<Title>/<mix_filename>

The METADATA.yaml lists ``stems: {Sxx: {filename, instrument, raw: {Ryy: {filename,
instrument}}}}`` beside ``stem_dir``, ``raw_dir`` and ``mix_filename``. MedleyDB ships its
metadata apart from the audio: ``metadata_dir`` reads every ``*_METADATA.yaml`` of that
directory instead, the audio still being looked for under ``<corpus>/<Artist>_<Title>/``. A
directory that holds ``*_METADATA.yaml`` files directly is read as such a metadata directory.

**Session folders** (``format="folder"``), for one's own recordings::

    <corpus>/<session>/stems/<instrument>/<file>.wav    one or more stems per instrument
    <corpus>/<session>/raw/<instrument>/<file>.wav      the raw tracks (microphones, DI, takes)
    <corpus>/<session>/mix.wav                          optional: the mix
    <corpus>/<session>/session.yaml                     optional: the manifest

The instrument folder's name is the instrument label (MedleyDB's taxonomy, e.g.
``electric bass``). A raw track belongs to the stem of the same instrument when that
instrument has one stem. When an instrument has several stems, or a stem was made from raws
of another label, ``session.yaml`` says which raws made which stem; it may also give the
song's artist, title, genre and origin (any other field is kept too)::

    artist: The Examples
    title: First Song
    genre: Rock
    stems:
      electric guitar/rhythm.wav: [electric guitar/amp-sm57.wav, electric guitar/di.wav]
      electric guitar/lead.wav: [electric guitar/lead-amp.wav]
      vocalists/backing.wav: [female singer/take1.wav, female singer/take2.wav]

Keys of ``stems`` are paths under ``stems/``, values are paths under ``raw/``. A raw of an
instrument without a stem is recorded without a stem. Audio files are ``.wav``, ``.flac``,
``.aif``/``.aiff`` or ``.ogg``; hidden files are ignored.

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

import hashlib
import json
import math
import os
import posixpath
import re
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from collections.abc import Callable, Iterable

import pandas as pd
import soundfile as sf
import sqlalchemy as sa
import yaml

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

FORMATS = ("medleydb", "folder")
AUDIO_SUFFIXES = {".wav", ".flac", ".aif", ".aiff", ".ogg"}
METADATA_SUFFIX = "_METADATA.yaml"
SESSION_MANIFEST = "session.yaml"
#: Multitrack columns filled from the metadata; every other top-level field goes to ``extra``.
COLUMN_FIELDS = ("artist", "title", "genre", "origin")
MIX_CODE = "MIX"
NOT_CHECKED = "not checked (metadata only)"
NOT_IN_METADATA = "no longer in the metadata"
#: A batch of whole multitracks is written in one transaction when it holds this many, or when
#: its first multitrack was inspected this many seconds ago (so slow audio commits regularly).
BATCH_MULTITRACKS = 25
BATCH_SECONDS = 2.0
_HASH_CHUNK = 1 << 20

try:  # libyaml's parser is ~10x faster than the pure-Python one, with the same results
    _YamlLoader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _YamlLoader = yaml.SafeLoader

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


# -- what the metadata says ------------------------------------------------------------------------
@dataclass
class TrackSpec:
    """One audio file the metadata names: kind mix|stem|raw, a code unique in its multitrack,
    its labels (first = primary) and its path relative to the corpus root (POSIX)."""

    kind: str
    code: str
    labels: list[str] | None
    path: str


@dataclass
class MultitrackSpec:
    name: str
    metadata_file: str
    metadata_hash: str
    fields: dict[str, Any]  # artist, title, genre, origin
    extra: dict[str, Any]
    tracks: list[TrackSpec]
    links: list[tuple[str, str]]  # (stem code, raw code)


@dataclass
class _Source:
    """A multitrack to ingest before it is parsed: its name, the file(s) describing it and the
    hash of what was read (cheap to compute, so unchanged multitracks are never parsed)."""

    name: str
    metadata_file: Path
    metadata_hash: str
    parse: Callable[[], MultitrackSpec]


class Rejected(Exception):
    """A multitrack or metadata file that cannot be ingested as it is; the message says why."""


# -- the entry point ----------------------------------------------------------------------------------
def ingest(
    store: Store,
    path: Path | str,
    format: str = "medleydb",
    metadata_dir: Path | str | None = None,
    metadata_only: bool = False,
    progress: ProgressCallback | None = None,
) -> IngestSummary:
    """Ingest the corpus at ``path`` (see the module docstring for the layouts).

    ``metadata_only`` records what the metadata says without looking at the audio (tracks
    that are new get audio status ``missing``; audio facts already recorded are kept). Returns
    what was done; problems with single multitracks or files are in the summary, not raised.
    Raises :class:`StemstoreError` only when nothing can be ingested at all (no such
    directory, unknown format, no multitracks found).
    """
    if format not in FORMATS:
        raise StemstoreError(f"unknown corpus format {format!r} (formats: {', '.join(FORMATS)})")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise StemstoreError(f"no corpus directory at {root}")
    root = root.resolve()
    if metadata_dir is not None and format != "medleydb":
        raise StemstoreError("--metadata is for the medleydb format only")

    summary = IngestSummary(root=str(root), format=format, metadata_only=metadata_only)
    if format == "medleydb":
        meta = Path(metadata_dir).expanduser() if metadata_dir is not None else None
        if meta is not None and not meta.is_dir():
            raise StemstoreError(f"no metadata directory at {meta}")
        sources = _medleydb_sources(root, meta.resolve() if meta else None, summary)
    else:
        sources = _folder_sources(root, summary)
    if not sources and not summary.rejected:
        hint = (
            "no <name>/<name>_METADATA.yaml (or --metadata DIR)"
            if format == "medleydb"
            else "no <session>/stems/ or <session>/raw/ folders"
        )
        raise StemstoreError(f"no multitracks found in {root}: {hint}")

    corpus_id = _corpus_id(store, root, format)
    known = _known_multitracks(store, [src.name for src in sources])
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
        nonlocal done
        if not batch:
            return
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

    with store.run("ingest", params=params, deferred=True, failure_message=describe_error) as run:
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
    corpus_id: int,
    format: str,
    source: _Source,
    known: dict | None,
    metadata_only: bool,
    summary: IngestSummary,
) -> tuple[MultitrackSpec, dict[str, AudioFacts]] | None:
    """Get one multitrack ready to write: None if nothing changed (or it is rejected), else
    what the metadata says and the facts of its files."""
    if known is not None and known["corpus_id"] != corpus_id:
        if not (format == "medleydb" and known["format"] == "medleydb"):
            summary.rejected.append(
                (
                    source.name,
                    (
                        f"a multitrack of this name already belongs to corpus {known['corpus']}; "
                        "rename it to ingest it from here"
                    ),
                )
            )
            return None
        # A MedleyDB multitrack is the same song wherever the corpus lives: it moved.
    stored_tracks = known["tracks"] if known else {}
    if (
        known is not None
        and known["corpus_id"] == corpus_id
        and known["metadata_hash"] == source.metadata_hash
    ):
        if metadata_only or all(
            _stat_stamp(root / t["path"]) == t["stamp"] and t["status_reason"] != NOT_CHECKED
            for t in stored_tracks.values()
            if t["path"]
        ):
            summary.unchanged_multitracks.append(source.name)
            _report_stored_problems(stored_tracks, metadata_only, summary)
            return None
    try:
        spec = source.parse()
        inside = _InsideChecker(root)
        for track in spec.tracks:
            inside.check(track.path)
    except Rejected as exc:
        summary.rejected.append((source.name, str(exc)))
        return None
    facts = {} if metadata_only else _inspect_files(root, spec.tracks, stored_tracks)
    return spec, facts


# -- MedleyDB ------------------------------------------------------------------------------------------
def _medleydb_sources(root: Path, metadata_dir: Path | None, summary: IngestSummary) -> list[_Source]:
    if metadata_dir is None and any(root.glob(f"*{METADATA_SUFFIX}")):
        metadata_dir = root  # a directory of metadata files, e.g. MedleyDB's metadata release
    files = (
        sorted(metadata_dir.glob(f"*{METADATA_SUFFIX}"))
        if metadata_dir is not None
        else sorted(root.glob(f"*/*{METADATA_SUFFIX}"))
    )
    sources, seen = [], {}
    for file in files:
        name = file.name[: -len(METADATA_SUFFIX)]
        if metadata_dir is None and file.parent.name != name:
            summary.rejected.append((str(file), f"a metadata file must be in the folder {name}/"))
            continue
        if name in seen:
            summary.rejected.append((str(file), f"multitrack {name} is also described by {seen[name]}"))
            continue
        seen[name] = file
        try:
            data = file.read_bytes()
        except OSError as exc:
            summary.rejected.append((str(file), f"cannot read it: {exc.strerror or exc}"))
            continue
        sources.append(
            _Source(
                name,
                file,
                hashlib.sha256(data).hexdigest(),
                lambda name=name, file=file, data=data: parse_medleydb(name, file, data),
            )
        )
    return sources


def parse_medleydb(name: str, file: Path, data: bytes) -> MultitrackSpec:
    """What a MedleyDB METADATA.yaml says about multitrack ``name``; raises :class:`Rejected`
    naming the file and the key for malformed YAML and missing or ill-typed keys."""
    try:
        meta = yaml.load(data.decode("utf-8"), Loader=_YamlLoader)
    except UnicodeDecodeError as exc:
        raise Rejected(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise Rejected(f"{file}: malformed YAML{at}: {problem}") from exc
    if not isinstance(meta, dict):
        raise Rejected(f"{file}: expected a mapping of fields, found {type(meta).__name__}")

    stems = _require(meta, "stems", dict, file)
    stem_dir = _require(meta, "stem_dir", str, file)
    raw_dir = _require(meta, "raw_dir", str, file)
    tracks: list[TrackSpec] = []
    links: list[tuple[str, str]] = []
    mix = meta.get("mix_filename")
    if mix is not None:
        tracks.append(TrackSpec("mix", MIX_CODE, None, _join(name, _filename(mix, "mix_filename", file))))
    for stem_id in sorted(stems, key=str):
        key = f"stems.{stem_id}"
        stem = stems[stem_id]
        if not isinstance(stem, dict):
            raise Rejected(f"{file}: key '{key}' must be a mapping with filename, instrument, raw")
        stem_code = str(stem_id)
        stem_file = _filename(_require(stem, "filename", str, file, key), f"{key}.filename", file)
        tracks.append(
            TrackSpec("stem", stem_code, _labels(stem, file, key), _join(name, stem_dir, stem_file))
        )
        raws = stem.get("raw") or {}
        if not isinstance(raws, dict):
            raise Rejected(f"{file}: key '{key}.raw' must be a mapping of raw tracks")
        for raw_id in sorted(raws, key=str):
            raw_key = f"{key}.raw.{raw_id}"
            raw = raws[raw_id]
            if not isinstance(raw, dict):
                raise Rejected(f"{file}: key '{raw_key}' must be a mapping with filename, instrument")
            raw_file = _filename(_require(raw, "filename", str, file, raw_key), f"{raw_key}.filename", file)
            raw_code = f"{stem_code}/{raw_id}"
            tracks.append(
                TrackSpec("raw", raw_code, _labels(raw, file, raw_key), _join(name, raw_dir, raw_file))
            )
            links.append((stem_code, raw_code))
    fields = {k: None if meta.get(k) is None else str(meta[k]) for k in COLUMN_FIELDS}
    extra = _jsonable({k: v for k, v in meta.items() if k not in COLUMN_FIELDS and k != "stems"})
    return MultitrackSpec(name, str(file), hashlib.sha256(data).hexdigest(), fields, extra, tracks, links)


def _jsonable(value: dict) -> dict:
    """As the store will give it back (YAML dates become strings), so comparisons hold."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _require(mapping: dict, key: str, kind: type, file: Path, parent: str = "") -> Any:
    full = f"{parent}.{key}" if parent else key
    if key not in mapping or mapping[key] is None:
        raise Rejected(f"{file}: missing required key '{full}'")
    value = mapping[key]
    if not isinstance(value, kind):
        expected = {dict: "a mapping", str: "a string", list: "a list"}[kind]
        raise Rejected(f"{file}: key '{full}' must be {expected}, found {type(value).__name__}")
    return value


def _filename(value: Any, key: str, file: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Rejected(f"{file}: key '{key}' must be a file name")
    return value.strip()


def _labels(entry: dict, file: Path, key: str) -> list[str]:
    """Instrument labels: a string, or a list of strings whose first is the primary label."""
    value = entry.get("instrument")
    labels = [value] if isinstance(value, str) else value
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(v, str) and v.strip() for v in labels)
    ):
        raise Rejected(f"{file}: missing required key '{key}.instrument' (a label or a list of labels)")
    return list(dict.fromkeys(v.strip() for v in labels))


_DRIVE = re.compile(r"^[A-Za-z]:")


def _join(*parts: str) -> str:
    """A path relative to the corpus root from metadata parts, refusing anything that is not a
    plain relative path (absolute, drive letters, '..'). The symlink check is in
    :class:`_InsideChecker`, which sees the file system. (String tests, not pathlib: this runs
    for every track of every multitrack.)"""
    for part in parts:
        if part.startswith(("/", "\\")) or _DRIVE.match(part):
            raise Rejected(f"file '{part}' is an absolute path; metadata must name files inside the corpus")
        if ".." in part.replace("\\", "/").split("/"):
            raise Rejected(f"file '{part}' goes outside its folder with '..'")
    return posixpath.normpath("/".join(parts))


class _InsideChecker:
    """Refuses paths that resolve outside the corpus root, e.g. through a symlink. Resolves each
    directory once; a file is resolved only if it is itself a symlink."""

    def __init__(self, root: Path):
        self.root = str(root)
        self.dirs: dict[str, str] = {}

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root + os.sep)

    def check(self, relpath: str) -> None:
        directory, _ = posixpath.split(relpath)
        real_dir = self.dirs.get(directory)
        if real_dir is None:
            real_dir = self.dirs[directory] = os.path.realpath(os.path.join(self.root, directory))
        full = os.path.join(self.root, relpath)
        real = (
            os.path.realpath(full)
            if os.path.islink(full)
            else os.path.join(real_dir, posixpath.basename(relpath))
        )
        if not self._inside(real):
            raise Rejected(f"file '{relpath}' resolves outside the corpus root (to {real})")


# -- session folders -------------------------------------------------------------------------------
def _audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder``, sorted, hidden ones ignored."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in AUDIO_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and (p.is_file() or p.is_symlink())
    )


def _folder_sources(root: Path, summary: IngestSummary) -> list[_Source]:
    sources = []
    for session in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not ((session / "stems").is_dir() or (session / "raw").is_dir()):
            continue
        files = (
            _audio_files(session / "stems")
            + _audio_files(session / "raw")
            + [
                p
                for p in sorted(session.iterdir())
                if p.suffix.lower() in AUDIO_SUFFIXES and p.stem.lower() == "mix"
            ]
        )
        manifest = session / SESSION_MANIFEST
        digest = hashlib.sha256()
        try:
            digest.update(manifest.read_bytes() if manifest.exists() else b"")
        except OSError as exc:
            summary.rejected.append((str(manifest), f"cannot read it: {exc.strerror or exc}"))
            continue
        for p in files:
            digest.update(b"\0" + p.relative_to(session).as_posix().encode())
        sources.append(
            _Source(
                session.name,
                manifest if manifest.exists() else session,
                digest.hexdigest(),
                lambda s=session, f=files, h=digest.hexdigest(): parse_session(root, s, f, h),
            )
        )
    return sources


def parse_session(root: Path, session: Path, files: list[Path], metadata_hash: str) -> MultitrackSpec:
    """What a session folder says (see the module docstring)."""
    name = session.name
    manifest_path = session / SESSION_MANIFEST
    manifest: dict = {}
    if manifest_path.exists():
        try:
            manifest = yaml.load(manifest_path.read_text(encoding="utf-8"), Loader=_YamlLoader) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}" if where else ""
            raise Rejected(
                f"{manifest_path}: malformed YAML{at}: {getattr(exc, 'problem', None) or exc}"
            ) from exc
        if not isinstance(manifest, dict):
            raise Rejected(f"{manifest_path}: expected a mapping of fields")

    stems: dict[str, str] = {}  # path under stems/ -> instrument
    raws: dict[str, str] = {}  # path under raw/ -> instrument
    tracks: list[TrackSpec] = []
    for p in files:
        rel = p.relative_to(session)
        if rel.parts[0] in ("stems", "raw"):
            inner = PurePosixPath(*rel.parts[1:])
            if len(inner.parts) != 2:
                raise Rejected(
                    f"file '{rel.as_posix()}': audio must be in {rel.parts[0]}/<instrument>/<file>"
                )
            (stems if rel.parts[0] == "stems" else raws)[inner.as_posix()] = inner.parts[0]
        else:
            tracks.append(TrackSpec("mix", MIX_CODE, None, _join(name, rel.as_posix())))
    if len([t for t in tracks if t.kind == "mix"]) > 1:
        raise Rejected(f"session {name}: several mix files; keep one")

    mapping = manifest.get("stems") or {}
    if not isinstance(mapping, dict):
        raise Rejected(f"{manifest_path}: key 'stems' must map stem files to lists of raw files")
    raw_to_stems: dict[str, list[str]] = {}
    for stem_file, raw_files in mapping.items():
        if stem_file not in stems:
            raise Rejected(f"{manifest_path}: key 'stems.{stem_file}': no such file under stems/")
        raw_files = [raw_files] if isinstance(raw_files, str) else raw_files
        if not isinstance(raw_files, list):
            raise Rejected(f"{manifest_path}: key 'stems.{stem_file}' must be a list of raw files")
        for raw_file in raw_files:
            if raw_file not in raws:
                raise Rejected(
                    f"{manifest_path}: key 'stems.{stem_file}': no raw file '{raw_file}' under raw/"
                )
            raw_to_stems.setdefault(raw_file, []).append(stem_file)

    stems_of: dict[str, list[str]] = {}
    for stem_file, instrument in stems.items():
        stems_of.setdefault(instrument, []).append(stem_file)
        tracks.append(TrackSpec("stem", f"stems/{stem_file}", [instrument], _join(name, "stems", stem_file)))
    links = []
    for raw_file, instrument in raws.items():
        tracks.append(TrackSpec("raw", f"raw/{raw_file}", [instrument], _join(name, "raw", raw_file)))
        owners = raw_to_stems.get(raw_file)
        if owners is None:
            candidates = stems_of.get(instrument, [])
            if len(candidates) > 1:
                raise Rejected(
                    f"raw file 'raw/{raw_file}' could belong to {len(candidates)} stems of "
                    f"'{instrument}': say which in {SESSION_MANIFEST} (stems: <stem>: [<raws>])"
                )
            owners = candidates
        links.extend((f"stems/{stem}", f"raw/{raw_file}") for stem in owners)

    fields = {k: None if manifest.get(k) is None else str(manifest[k]) for k in COLUMN_FIELDS}
    fields["title"] = fields["title"] or name
    extra = _jsonable({k: v for k, v in manifest.items() if k not in COLUMN_FIELDS and k != "stems"})
    return MultitrackSpec(
        name,
        str(manifest_path if manifest_path.exists() else session),
        metadata_hash,
        fields,
        extra,
        tracks,
        links,
    )


# -- audio files ------------------------------------------------------------------------------------------
@dataclass
class AudioFacts:
    """What the file system and the audio library say about one file."""

    status: str  # present | missing | unreadable
    reason: str | None = None
    content_hash: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    duration: float | None = None
    stamp: tuple[int, int] | None = None  # (size, mtime_ns) when hashed


def _stat_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _inspect_files(
    root: Path, tracks: list[TrackSpec], stored: dict[tuple[str, str], dict]
) -> dict[str, AudioFacts]:
    """Facts of each track's file, by path. Files whose size and mtime match what was stored
    are not read again. Reading is done in threads: hashing and decoding release the GIL."""
    todo: list[TrackSpec] = []
    facts: dict[str, AudioFacts] = {}
    for track in tracks:
        previous = stored.get((track.kind, track.code))
        stamp = _stat_stamp(root / track.path)
        if (
            previous is not None
            and stamp is not None
            and previous["stamp"] == stamp
            and previous["path"] == track.path
            and previous["audio_status"] in ("present", "unreadable")
        ):
            facts[track.path] = AudioFacts(
                previous["audio_status"],
                previous["status_reason"],
                previous["content_hash"],
                previous["sample_rate"],
                previous["channels"],
                previous["duration"],
                stamp,
            )
        else:
            todo.append(track)
    if todo:
        with ThreadPoolExecutor(max_workers=min(4, len(todo), os.cpu_count() or 1)) as pool:
            for track, fact in zip(todo, pool.map(lambda t: inspect_audio(root / t.path), todo)):
                facts[track.path] = fact
    return facts


def inspect_audio(path: Path) -> AudioFacts:
    """Hash a file (sha256, streamed) and read its audio facts; never raises for bad files."""
    try:
        before = path.stat()
    except FileNotFoundError:
        return AudioFacts("missing", "file not found")
    except OSError as exc:
        return AudioFacts("unreadable", f"cannot stat: {exc.strerror or exc}")
    if not path.is_file():
        return AudioFacts("unreadable", "not a regular file")
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        return AudioFacts("unreadable", f"cannot read: {exc.strerror or exc}")
    stamp = (before.st_size, before.st_mtime_ns)
    facts = AudioFacts("present", None, digest.hexdigest(), stamp=stamp)
    problem = _wav_truncation(path, before.st_size) if path.suffix.lower() == ".wav" else None
    try:
        with sf.SoundFile(str(path)) as audio:
            facts.sample_rate, facts.channels = audio.samplerate, audio.channels
            facts.duration = audio.frames / audio.samplerate if audio.samplerate else None
            if audio.frames <= 0:
                problem = problem or "no audio samples"
            elif problem is None:
                # decode the last block: corrupt compressed files fail here, not at open
                audio.seek(max(0, audio.frames - 1024))
                audio.read(1024, dtype="float32")
    except Exception as exc:  # libsndfile's errors, and anything a broken header provokes
        problem = problem or _first_line(exc)
    if problem:
        facts.status, facts.reason = "unreadable", problem
    return facts


def _wav_truncation(path: Path, size: int) -> str | None:
    """Why a RIFF/WAVE file is truncated, or None. libsndfile opens a WAV whose data chunk is
    cut short and quietly reports fewer frames; the chunk sizes in the header tell."""
    try:
        with open(path, "rb") as f:
            header = f.read(12)
            if len(header) < 12 or header[:4] not in (b"RIFF", b"RF64") or header[8:12] != b"WAVE":
                return None  # not RIFF/WAVE: leave the verdict to libsndfile
            if header[:4] == b"RF64":
                return None  # 64-bit sizes live in the ds64 chunk; libsndfile checks those
            offset = 12
            while offset + 8 <= size:
                f.seek(offset)
                chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
                if chunk_id == b"data":
                    if offset + 8 + chunk_size > size:
                        return (
                            f"truncated: the data chunk declares {chunk_size} bytes, the file "
                            f"holds {size - offset - 8}"
                        )
                    return None
                offset += 8 + chunk_size + (chunk_size & 1)
            return "no data chunk"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- the store ------------------------------------------------------------------------------------------
def _corpus_id(store: Store, root: Path, format: str) -> int:
    """The corpus at ``root`` (its resolved path is its name), created on first ingest."""
    with store.session() as s:
        corpus = s.scalar(sa.select(Corpus).where(Corpus.name == str(root)))
        if corpus is None:
            corpus = Corpus(name=str(root), root=str(root), format=format)
            s.add(corpus)
            s.flush()
        elif corpus.format != format:
            raise StemstoreError(f"{root} was ingested as format {corpus.format}, not {format}")
        return corpus.id


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
        if t["audio_status"] == "missing" and t["path"]:
            summary.missing_files.append(t["path"])
        elif t["audio_status"] == "unreadable":
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
                        values.update(audio_status="missing", status_reason=NOT_CHECKED)
                    new_rows.append(
                        {**dict.fromkeys(_TRACK_COLUMNS), "multitrack_id": mt_id, "stale": False, **values}
                    )
                    _note_file(track.path, fact, None, summary)
                    if outcome[spec.name] == "unchanged":
                        outcome[spec.name] = "updated"
                    continue
                if fact is not None and fact.status == "missing" and previous["content_hash"]:
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
    if fact.status == "missing":
        summary.missing_files.append(path)
        if previous is not None and previous["audio_status"] == "present":
            summary.disappeared_files.append(path)
    elif fact.status == "unreadable":
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
