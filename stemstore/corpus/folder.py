"""The session-folder corpus format, for one's own recordings.

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
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

import yaml

from stemstore.enums import TrackKind
from stemstore.corpus.manifest import (
    AUDIO_SUFFIXES,
    COLUMN_FIELDS,
    MIX_CODE,
    MultitrackSpec,
    Rejected,
    Source,
    TrackSpec,
    join_path,
    jsonable,
    load_yaml,
)

SESSION_MANIFEST = "session.yaml"


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


def find_sources(root: Path, rejected: list[tuple[str, str]]) -> list[Source]:
    """The sessions under ``root``, not yet parsed; unusable manifests are appended to
    ``rejected`` as (file, reason)."""
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
            rejected.append((str(manifest), f"cannot read it: {exc.strerror or exc}"))
            continue
        for p in files:
            digest.update(b"\0" + p.relative_to(session).as_posix().encode())
        sources.append(
            Source(
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
            manifest = load_yaml(manifest_path.read_text(encoding="utf-8"), manifest_path) or {}
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
            tracks.append(TrackSpec(TrackKind.MIX, MIX_CODE, None, join_path(name, rel.as_posix())))
    if len([t for t in tracks if t.kind == TrackKind.MIX]) > 1:
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
        tracks.append(
            TrackSpec(TrackKind.STEM, f"stems/{stem_file}", [instrument], join_path(name, "stems", stem_file))
        )
    links = []
    for raw_file, instrument in raws.items():
        tracks.append(
            TrackSpec(TrackKind.RAW, f"raw/{raw_file}", [instrument], join_path(name, "raw", raw_file))
        )
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
    extra = jsonable({k: v for k, v in manifest.items() if k not in COLUMN_FIELDS and k != "stems"})
    return MultitrackSpec(
        name,
        str(manifest_path if manifest_path.exists() else session),
        metadata_hash,
        fields,
        extra,
        tracks,
        links,
    )
