"""Manifests: what a corpus's metadata says about a multitrack, whatever the corpus format.

A format module (:mod:`~stemstore.corpus.medleydb`, :mod:`~stemstore.corpus.folder`) turns its
files into a :class:`MultitrackSpec`; ingest compares specs with the store and writes them.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: Audio files a corpus may hold.
AUDIO_SUFFIXES = {".wav", ".flac", ".aif", ".aiff", ".ogg"}
#: Multitrack columns filled from the metadata; every other top-level field goes to ``extra``.
COLUMN_FIELDS = ("artist", "title", "genre", "origin")
#: The code of a multitrack's mix track.
MIX_CODE = "MIX"

try:  # libyaml's parser is ~10x faster than the pure-Python one, with the same results
    YamlLoader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    YamlLoader = yaml.SafeLoader

#: The largest metadata file read: real ones are a few kilobytes, and a huge one would be held
#: in memory whole.
MAX_METADATA_BYTES = 4 * 1024 * 1024


def load_yaml(text: str, file: Path) -> Any:
    """The YAML document in ``text`` (read from ``file``), refusing aliases (``*name``).

    An alias repeats what its anchor names without copying it, so a few hundred bytes of
    nested aliases (a "billion laughs") expand to gigabytes when the fields are stored as JSON:
    metadata never needs them, so a file using them is :class:`Rejected` before anything is
    expanded. Other YAML errors propagate as :class:`yaml.YAMLError`.
    """
    if len(text) > MAX_METADATA_BYTES:
        raise Rejected(
            f"{file}: {len(text)} bytes, more than a metadata file may hold ({MAX_METADATA_BYTES})"
        )
    # an alias needs an anchor ('&'), so text without one is parsed once, as usual
    if "&" in text and any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=YamlLoader)):
        raise Rejected(f"{file}: uses YAML aliases (*name), which metadata may not; write the values out")
    return yaml.load(text, Loader=YamlLoader)


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
class Source:
    """A multitrack to ingest before it is parsed: its name, the file(s) describing it and the
    hash of what was read (cheap to compute, so unchanged multitracks are never parsed)."""

    name: str
    metadata_file: Path
    metadata_hash: str
    parse: Callable[[], MultitrackSpec]


class Rejected(Exception):
    """A multitrack or metadata file that cannot be ingested as it is; the message says why."""


# -- paths the metadata names ------------------------------------------------------------------
def jsonable(value: dict) -> dict:
    """As the store will give it back (YAML dates become strings), so comparisons hold."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


_DRIVE = re.compile(r"^[A-Za-z]:")


def join_path(*parts: str) -> str:
    """A path relative to the corpus root from metadata parts, refusing anything that is not a
    plain relative path (absolute, drive letters, '..'). The symlink check is in
    :class:`InsideChecker`, which sees the file system. (String tests, not pathlib: this runs
    for every track of every multitrack.)"""
    for part in parts:
        if part.startswith(("/", "\\")) or _DRIVE.match(part):
            raise Rejected(f"file '{part}' is an absolute path; metadata must name files inside the corpus")
        if ".." in part.replace("\\", "/").split("/"):
            raise Rejected(f"file '{part}' goes outside its folder with '..'")
    return posixpath.normpath("/".join(parts))


class InsideChecker:
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
