"""Audio and pictures of segments, made on request from the corpus files.

Nothing here is stored: the original file is streamed as it is (the player seeks in it with
HTTP range requests), the processed window is recomputed as extraction does (mono,
ReplayGain gain, equal-loudness filter; see :mod:`stemstore.audio`) and written to a WAV in
memory, and pictures are drawn by matplotlib into PNG bytes.

A file is served only if it is a track of an ingested corpus and, with every symbolic link
resolved, lies inside that corpus's root: the URLs name track and segment ids, never paths.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from stemstore.store.connection import Store


class NotServable(LookupError):
    """No file to serve for this id (unknown, no audio, or outside its corpus)."""


def track_file(store: Store, track_id: int) -> Path:
    """The audio file of track ``track_id``, checked to lie inside its corpus root."""
    found = store.read_sql(
        "SELECT t.path, c.root FROM tracks t JOIN multitracks m ON m.id = t.multitrack_id "
        "JOIN corpora c ON c.id = m.corpus_id WHERE t.id = :i",
        {"i": int(track_id)},
    )
    if found.empty:
        raise NotServable(f"no track {track_id}")
    path, root = found.iloc[0]
    if not path or not root:
        raise NotServable(f"track {track_id} has no audio file in a corpus")
    root_dir = Path(root).resolve()
    file = (root_dir / path).resolve()  # follows symlinks: a link out of the corpus is refused
    if not file.is_relative_to(root_dir) or not file.is_file():
        raise NotServable(f"track {track_id}: file not inside its corpus")
    return file


def _window(store: Store, segment: dict) -> np.ndarray:
    """The segment's mono window at the analysis rate, as segment cut it."""
    from stemstore.audio import SAMPLE_RATE, AudioError, load_mono

    params = segment["params"]
    start = params.get("start_sample")
    length = params.get("window_samples")
    if start is None or length is None:
        if segment["start"] is None or segment["duration"] is None:
            raise NotServable(f"segment {segment['id']} has no window")
        start, length = (
            int(round(segment["start"] * SAMPLE_RATE)),
            int(round(segment["duration"] * SAMPLE_RATE)),
        )
    try:
        audio = load_mono(track_file(store, int(segment["track_id"])))
    except AudioError as exc:
        raise NotServable(str(exc)) from exc
    window = audio[int(start) : int(start) + int(length)]
    if window.size == 0:
        raise NotServable(f"segment {segment['id']}: the window lies outside the file")
    return window


def processed_window(store: Store, segment: dict) -> np.ndarray:
    """What the extractor saw: the mono window, loudness-normalised as the segment's params
    say, then equal-loudness filtered."""
    from stemstore.audio import preprocess

    window = _window(store, segment)
    try:
        return preprocess(window, normalise=bool(segment["params"].get("normalise", True)))[0]
    except ValueError as exc:
        raise NotServable(f"segment {segment['id']}: {exc}") from exc


def wav_bytes(signal: np.ndarray) -> bytes:
    """A 32-bit float mono WAV at the analysis rate (float: the gain may exceed full scale)."""
    import soundfile as sf

    from stemstore.audio import SAMPLE_RATE

    out = io.BytesIO()
    sf.write(out, np.asarray(signal, dtype=np.float32), SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return out.getvalue()


def picture(store: Store, segment: dict, kind: str) -> bytes:
    """PNG of the segment: ``waveform`` (original mono window over processed) or
    ``spectrogram`` (of the processed window)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from stemstore.audio import SAMPLE_RATE, preprocess

    original = _window(store, segment)
    try:
        processed = preprocess(original, normalise=bool(segment["params"].get("normalise", True)))[0]
    except ValueError as exc:
        raise NotServable(f"segment {segment['id']}: {exc}") from exc
    figure = Figure(figsize=(7, 2.6), dpi=90)
    label = f"{segment['role']} {segment['code']}"
    if kind == "waveform":
        axes = figure.subplots(2, 1, sharex=True)
        step = max(1, original.size // 4000)  # enough points for the eye, few for the PNG
        t = np.arange(0, original.size, step) / SAMPLE_RATE
        axes[0].plot(t, original[::step], lw=0.5, color="tab:blue")
        axes[0].set_ylabel("original")
        axes[1].plot(t, processed[::step], lw=0.5, color="tab:orange")
        axes[1].set_ylabel("processed")
        axes[1].set_xlabel("seconds into the window")
        axes[0].set_title(f"{label}: waveform", fontsize=9)
    elif kind == "spectrogram":
        ax = figure.subplots()
        ax.specgram(processed, NFFT=2048, Fs=SAMPLE_RATE, noverlap=1024, cmap="magma")
        ax.set_ylim(0, 16000)
        ax.set_ylabel("Hz")
        ax.set_xlabel("seconds into the window")
        ax.set_title(f"{label}: spectrogram of the processed window", fontsize=9)
    else:
        raise NotServable(f"no picture {kind!r}")
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def figure_png(draw) -> bytes:
    """Run ``draw(path)`` (one of the CLI's figure functions) into a temporary file, return it."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="stemstore-figure-") as folder:
        path = Path(folder) / "figure.png"
        draw(path)
        return path.read_bytes()
