"""The MedleyDB corpus format: one ``<name>_METADATA.yaml`` per multitrack.

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
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from stemstore.enums import TrackKind
from stemstore.corpus.manifest import (
    COLUMN_FIELDS,
    MAX_METADATA_BYTES,
    MIX_CODE,
    MultitrackSpec,
    Rejected,
    Source,
    TrackSpec,
    join_path,
    load_yaml,
    jsonable,
)

METADATA_SUFFIX = "_METADATA.yaml"


def find_sources(root: Path, metadata_dir: Path | None, rejected: list[tuple[str, str]]) -> list[Source]:
    """The multitracks under ``root`` (or described in ``metadata_dir``), not yet parsed.

    Files that cannot be used are appended to ``rejected`` as (file, reason).
    """
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
            rejected.append((str(file), f"a metadata file must be in the folder {name}/"))
            continue
        if name in seen:
            rejected.append((str(file), f"multitrack {name} is also described by {seen[name]}"))
            continue
        seen[name] = file
        try:
            if file.stat().st_size > MAX_METADATA_BYTES:
                rejected.append((str(file), f"more than {MAX_METADATA_BYTES} bytes: not a metadata file"))
                continue
            data = file.read_bytes()
        except OSError as exc:
            rejected.append((str(file), f"cannot read it: {exc.strerror or exc}"))
            continue
        sources.append(
            Source(
                name,
                file,
                hashlib.sha256(data).hexdigest(),
                lambda name=name, file=file, data=data: parse_medleydb(name, file, data),
            )
        )
    return sources


def read_metadata(file: Path, data: bytes | None = None) -> dict[str, Any]:
    """A METADATA.yaml file's fields (``data``: its bytes, if already read).

    The one place MedleyDB metadata is parsed: ingest and the synthetic corpus both read it
    here. Raises :class:`Rejected` naming the file for unreadable text and malformed YAML.
    """
    try:
        text = (file.read_bytes() if data is None else data).decode("utf-8")
        meta = load_yaml(text, file)
    except OSError as exc:
        raise Rejected(f"{file}: cannot read it: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise Rejected(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise Rejected(f"{file}: malformed YAML{at}: {problem}") from exc
    if not isinstance(meta, dict):
        raise Rejected(f"{file}: expected a mapping of fields, found {type(meta).__name__}")
    return meta


def parse_medleydb(name: str, file: Path, data: bytes) -> MultitrackSpec:
    """What a MedleyDB METADATA.yaml says about multitrack ``name``; raises :class:`Rejected`
    naming the file and the key for malformed YAML and missing or ill-typed keys."""
    meta = read_metadata(file, data)
    stems = _require(meta, "stems", dict, file)
    stem_dir = _require(meta, "stem_dir", str, file)
    raw_dir = _require(meta, "raw_dir", str, file)
    tracks: list[TrackSpec] = []
    links: list[tuple[str, str]] = []
    mix = meta.get("mix_filename")
    if mix is not None:
        tracks.append(
            TrackSpec(TrackKind.MIX, MIX_CODE, None, join_path(name, _filename(mix, "mix_filename", file)))
        )
    for stem_id in sorted(stems, key=str):
        key = f"stems.{stem_id}"
        stem = stems[stem_id]
        if not isinstance(stem, dict):
            raise Rejected(f"{file}: key '{key}' must be a mapping with filename, instrument, raw")
        stem_code = str(stem_id)
        stem_file = _filename(_require(stem, "filename", str, file, key), f"{key}.filename", file)
        tracks.append(
            TrackSpec(
                TrackKind.STEM, stem_code, _labels(stem, file, key), join_path(name, stem_dir, stem_file)
            )
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
                TrackSpec(
                    TrackKind.RAW, raw_code, _labels(raw, file, raw_key), join_path(name, raw_dir, raw_file)
                )
            )
            links.append((stem_code, raw_code))
    fields = {k: None if meta.get(k) is None else str(meta[k]) for k in COLUMN_FIELDS}
    extra = jsonable({k: v for k, v in meta.items() if k not in COLUMN_FIELDS and k != "stems"})
    return MultitrackSpec(name, str(file), hashlib.sha256(data).hexdigest(), fields, extra, tracks, links)


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
