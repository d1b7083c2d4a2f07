"""Relocating a corpus: the same files now live under another directory.

A corpus is named by the path it was first ingested from; where it lives now is its ``root``.
Moving or copying a corpus is normal, so :func:`relocate` rewrites the root (and the metadata
file paths under it) in one transaction, after checking that the new directory holds the same
files: every stored file is looked for (and its size compared when known), and a few are hashed.

Only ``root`` and ``metadata_file`` columns change, never a key: DuckDB cannot update a row's
indexed columns while other rows reference it by foreign key, so a corpus keeps its id and name
and its multitracks stay where they are.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from stemstore.enums import CorpusFormat
from stemstore.errors import StemstoreError
from stemstore.store.connection import Store
from stemstore.store.schema import Corpus, Multitrack, MultitrackSource, Track, TrackFile

#: How many stored files are hashed to confirm the new directory holds the same content.
HASHED_FILES = 3


@dataclass
class RelocateSummary:
    corpus: str
    old_root: str
    new_root: str
    multitracks: int
    files_checked: int
    files_hashed: int

    def describe(self) -> str:
        return (
            f"corpus {self.corpus} relocated from {self.old_root} to {self.new_root}: "
            f"{self.multitracks} multitracks; {self.files_checked} files found, "
            f"{self.files_hashed} hashed and unchanged"
        )


def find_corpus(store: Store, path: str) -> Corpus | None:
    """The ingested corpus whose root (or name) is ``path``, as given or resolved."""
    candidates = {os.path.abspath(os.path.expanduser(path))}
    if Path(path).expanduser().exists():
        candidates.add(str(Path(path).expanduser().resolve()))
    with store.session() as s:
        for column in (Corpus.root, Corpus.name):
            found = s.scalar(sa.select(Corpus).where(column.in_(sorted(candidates))).limit(1))
            if found is not None:
                s.expunge(found)
                return found
    return None


def relocate(store: Store, old: str | Path, new: str | Path) -> RelocateSummary:
    """Make the corpus found at ``old`` live at ``new``; see the module docstring.

    Raises :class:`StemstoreError` when ``old`` is no corpus of the store, ``new`` is not a
    directory or is already another corpus, or ``new`` does not hold the same files.
    """
    corpus = find_corpus(store, str(old))
    if corpus is None or corpus.format == CorpusFormat.IMPORT:
        known = store.read_sql("SELECT root FROM corpora WHERE root IS NOT NULL ORDER BY root")["root"]
        shown = ", ".join(known[:5]) or "none"
        raise StemstoreError(f"no corpus of the store is at {old} (corpora: {shown})")
    target = Path(new).expanduser()
    if not target.is_dir():
        raise StemstoreError(f"no directory at {new}: relocate needs the corpus's new place")
    target = target.resolve()
    if str(target) == corpus.root:
        raise StemstoreError(f"corpus {corpus.name} is already at {target}")
    other = find_corpus(store, str(target))
    if other is not None and other.id != corpus.id and _n_multitracks(store, other.id):
        raise StemstoreError(
            f"{target} is already corpus {other.name} of the store, with its own multitracks"
        )
    checked, hashed = verify_same_files(store, corpus, target)
    with store.session() as s:
        conn = s.connection()
        if other is not None and other.id != corpus.id:
            conn.execute(sa.delete(Corpus).where(Corpus.id == other.id))  # an empty leftover
        move_root(conn, corpus.id, corpus.root, str(target))
    return RelocateSummary(
        corpus.name, corpus.root, str(target), _n_multitracks(store, corpus.id), checked, hashed
    )


def move_root(conn: sa.Connection, corpus_id: int, old_root: str | None, new_root: str) -> None:
    """Rewrite a corpus's root and the metadata paths under the old one, in ``conn``'s
    transaction (non-key columns only: see the module docstring)."""
    conn.execute(sa.update(Corpus).where(Corpus.id == corpus_id).values(root=new_root))
    if not old_root:
        return
    prefix = old_root.rstrip("/") + "/"
    rows = conn.execute(
        sa.select(Multitrack.id, Multitrack.metadata_file).where(
            Multitrack.corpus_id == corpus_id, Multitrack.metadata_file.startswith(prefix, autoescape=True)
        )
    ).all()
    for mt_id, metadata_file in rows:
        moved = new_root.rstrip("/") + "/" + metadata_file[len(prefix) :]
        conn.execute(sa.update(Multitrack).where(Multitrack.id == mt_id).values(metadata_file=moved))


def verify_same_files(store: Store, corpus: Corpus, target: Path) -> tuple[int, int]:
    """Check that ``target`` holds the corpus's files: every stored audio file and metadata file
    under the old root exists (with the stored size, when known); a few are hashed. Returns
    (files found, files hashed); raises :class:`StemstoreError` naming the first difference."""
    tracks = store.read_sql(
        sa.select(Track.path, Track.content_hash, TrackFile.file_size)
        .join(Multitrack, Multitrack.id == Track.multitrack_id)
        .outerjoin(TrackFile, TrackFile.track_id == Track.id)
        .where(Multitrack.corpus_id == corpus.id, Track.audio_status == "present", Track.path.is_not(None))
        .order_by(Track.id)
    )
    metadata = store.read_sql(
        sa.select(Multitrack.metadata_file, MultitrackSource.metadata_hash)
        .outerjoin(MultitrackSource, MultitrackSource.multitrack_id == Multitrack.id)
        .where(Multitrack.corpus_id == corpus.id)
        .order_by(Multitrack.id)
    )
    prefix = (corpus.root or "").rstrip("/") + "/"
    files: list[tuple[str, int | None, str | None]] = [
        (str(target / row.path), None if row.file_size is None else int(row.file_size), row.content_hash)
        for row in tracks.itertuples(index=False)
    ]
    for row in metadata.itertuples(index=False):
        if row.metadata_file and row.metadata_file.startswith(prefix):
            # a MedleyDB metadata file's stored hash is of its bytes (a folder's is of a listing)
            digest = row.metadata_hash if corpus.format == "medleydb" else None
            files.append((str(target / row.metadata_file[len(prefix) :]), None, digest))
    if not files:
        raise StemstoreError(f"corpus {corpus.name} has no files recorded to check {target} against")
    missing = [path for path, _, _ in files if not os.path.isfile(path)]
    if missing:
        raise StemstoreError(
            f"{target} does not hold the same corpus: {len(missing)} of {len(files)} stored files "
            f"are not there, e.g. {missing[0]}"
        )
    for path, size, _ in files:
        if size is not None and os.path.getsize(path) != size:
            raise StemstoreError(f"{target} does not hold the same corpus: {path} has another size")
    hashable = [(path, digest) for path, _, digest in files if digest]
    step = max(1, len(hashable) // HASHED_FILES)
    sample = hashable[::step][:HASHED_FILES]
    for path, digest in sample:
        if _sha256(path) != digest:
            raise StemstoreError(f"{target} does not hold the same corpus: {path} has other content")
    return len(files), len(sample)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _n_multitracks(store: Store, corpus_id: int) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(Multitrack.corpus_id == corpus_id)).scalar())
