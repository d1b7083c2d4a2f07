"""Segment audio: loading, the highest-energy window, and the pre-processing (docs/method.md, section 2).

Everything here is a pure function from audio (or a file path) to numbers; nothing touches the
database. The pipeline for one segment is::

    audio = load_mono(path)                                  # mono, 44.1 kHz, float32
    start = highest_energy_window(audio, 10 * 44100)         # where the loudest 10 s begin
    segment = audio[start:start + 10 * 44100]
    if not is_silent(segment):
        ready, gain_db = preprocess(segment)                 # ReplayGain + EqualLoudness

Essentia does the signal processing (decoding, downmix, resampling, ReplayGain, EqualLoudness);
numpy only does the bookkeeping (energies, slicing).
"""

from __future__ import annotations

import os

import numpy as np

import essentia

essentia.log.infoActive = False  # set before essentia.standard, which logs on import
import essentia.standard as es  # noqa: E402

#: The analysis sample rate of the method (Hz).
SAMPLE_RATE = 44100
#: Length of an analysed segment (docs/method.md, section 2), in seconds.
SEGMENT_SECONDS = 10.0

# Essentia logs an INFO line for some algorithms; keep library output quiet.


class AudioError(ValueError):
    """An audio file that cannot be read or decoded (missing, truncated, corrupt, empty)."""


def load_mono(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Load ``path`` as a mono float32 signal at ``sample_rate`` Hz.

    Channels are averaged (Essentia's ``MonoLoader`` with ``downmix='mix'``) and audio at any
    other sample rate is resampled by Essentia. Raises :class:`AudioError`, naming the file,
    when the file is missing, cannot be decoded, or decodes to no samples.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f"audio file not found: {path}")
    try:
        audio = es.MonoLoader(filename=path, sampleRate=float(sample_rate), downmix="mix")()
    except Exception as exc:  # Essentia raises RuntimeError for decoder failures
        raise AudioError(f"cannot decode audio file {path}: {exc}") from exc
    if audio.size == 0:
        raise AudioError(f"audio file {path} decodes to no samples (empty or corrupt)")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"audio file {path} decodes to non-finite samples (corrupt)")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _as_signal(audio: np.ndarray) -> np.ndarray:
    signal = np.asarray(audio)
    if signal.ndim != 1:
        raise ValueError(f"expected a mono 1-D signal, got shape {signal.shape}")
    return signal


def window_energies(audio: np.ndarray, window_samples: int) -> np.ndarray:
    """Energy (sum of squared samples) of every window of ``window_samples`` samples.

    Element ``i`` is the energy of ``audio[i:i + window_samples]``; computed at once from the
    cumulative sum of squares, so the cost is linear in the signal length.
    """
    signal = _as_signal(audio)
    if window_samples <= 0:
        raise ValueError("window_samples must be positive")
    if signal.size < window_samples:
        raise ValueError(f"signal of {signal.size} samples is shorter than the window ({window_samples})")
    # float64 accumulation: a float32 running sum over minutes of audio loses the small windows.
    cumulative = np.empty(signal.size + 1, dtype=np.float64)
    cumulative[0] = 0.0
    np.cumsum(np.square(signal, dtype=np.float64), out=cumulative[1:])
    return cumulative[window_samples:] - cumulative[:-window_samples]


def highest_energy_window(audio: np.ndarray, window_samples: int) -> int:
    """Start index of the ``window_samples``-long window with the highest energy.

    Ties go to the earliest window. Raises ``ValueError`` if the signal is shorter than the
    window (such a track gives no pair; docs/method.md, section 2).
    """
    return int(np.argmax(window_energies(audio, window_samples)))


def window_energy(audio: np.ndarray, start: int, window_samples: int) -> float:
    """Energy (sum of squared samples) of ``audio[start:start + window_samples]``."""
    signal = _as_signal(audio)
    if start < 0 or start + window_samples > signal.size:
        raise ValueError(
            f"window [{start}, {start + window_samples}) lies outside a signal of {signal.size} samples"
        )
    segment = signal[start : start + window_samples].astype(np.float64)
    return float(np.dot(segment, segment))


def level_db(segment: np.ndarray) -> float:
    """Mean power of ``segment`` in dB (full scale sine = -3 dB); ``-inf`` for digital silence."""
    signal = _as_signal(segment)
    if signal.size == 0:
        return float("-inf")
    power = float(np.mean(np.square(signal, dtype=np.float64)))
    return 10.0 * np.log10(power) if power > 0 else float("-inf")


def is_silent(segment: np.ndarray, threshold_db: float = -90.0) -> bool:
    """Whether ``segment``'s mean power is below ``threshold_db`` (all-zero audio always is).

    A silent segment gives no pair (docs/method.md, section 2); callers record the reason.
    """
    return level_db(segment) < threshold_db


def preprocess(
    segment: np.ndarray, sample_rate: int = SAMPLE_RATE, normalise: bool = True
) -> tuple[np.ndarray, float]:
    """Loudness-normalise ``segment`` with ReplayGain, then apply Essentia's EqualLoudness filter.

    ReplayGain (Essentia) measures how many dB the segment is away from the ReplayGain reference
    level; that gain is applied so the segment sits at the reference level. With
    ``normalise=False`` the gain step is skipped (gain 0 dB) and only the filter is applied.

    Returns ``(audio, gain_db)``: the float32 signal ready for feature extraction and the gain
    applied in dB. Raises ``ValueError`` for a silent segment (no gain can normalise it) or one
    too short for ReplayGain (under 50 ms).
    """
    signal = np.ascontiguousarray(_as_signal(segment), dtype=np.float32)
    gain_db = 0.0
    if normalise:
        if is_silent(signal):
            raise ValueError("cannot loudness-normalise a silent segment")
        try:
            gain_db = float(es.ReplayGain(sampleRate=float(sample_rate))(signal))
        except RuntimeError as exc:
            raise ValueError(f"ReplayGain failed on the segment: {exc}") from exc
        signal = (signal * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)
    # A fresh filter per call: EqualLoudness keeps IIR state between calls.
    filtered = es.EqualLoudness(sampleRate=float(sample_rate))(signal)
    return np.ascontiguousarray(filtered, dtype=np.float32), gain_db
