"""Audio files: what the file system and the audio library say about each file a multitrack names.

Files are hashed (sha256) and their headers read in threads; a file whose size and modification
time are unchanged is not read again.
"""

from __future__ import annotations

import hashlib
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from stemstore.corpus.manifest import TrackSpec
from stemstore.enums import AudioStatus

_HASH_CHUNK = 1 << 20


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


def stat_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def inspect_files(
    root: Path, tracks: list[TrackSpec], stored: dict[tuple[str, str], dict]
) -> dict[str, AudioFacts]:
    """Facts of each track's file, by path. Files whose size and mtime match what was stored
    are not read again. Reading is done in threads: hashing and decoding release the GIL."""
    todo: list[TrackSpec] = []
    facts: dict[str, AudioFacts] = {}
    for track in tracks:
        previous = stored.get((track.kind, track.code))
        stamp = stat_stamp(root / track.path)
        if (
            previous is not None
            and stamp is not None
            and previous["stamp"] == stamp
            and previous["path"] == track.path
            and previous["audio_status"] in (AudioStatus.PRESENT, AudioStatus.UNREADABLE)
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
        return AudioFacts(AudioStatus.MISSING, "file not found")
    except OSError as exc:
        return AudioFacts(AudioStatus.UNREADABLE, f"cannot stat: {exc.strerror or exc}")
    if not path.is_file():
        return AudioFacts(AudioStatus.UNREADABLE, "not a regular file")
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        return AudioFacts(AudioStatus.UNREADABLE, f"cannot read: {exc.strerror or exc}")
    stamp = (before.st_size, before.st_mtime_ns)
    facts = AudioFacts(AudioStatus.PRESENT, None, digest.hexdigest(), stamp=stamp)
    problem = wav_truncation(path, before.st_size) if path.suffix.lower() == ".wav" else None
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
        facts.status, facts.reason = AudioStatus.UNREADABLE, problem
    return facts


def wav_truncation(path: Path, size: int) -> str | None:
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
