"""Instrument voices: a part's notes rendered as a dry performance signal."""

from __future__ import annotations


import math
from collections.abc import Callable

import numpy as np
import pedalboard
from scipy import signal

from stemstore.synth.song import Note, Song


def _midi_hz(midi: float | np.ndarray) -> float | np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi) - 69.0) / 12.0)


def _karplus_strong(
    freq: float,
    n_samples: int,
    sr: int,
    rng: np.random.Generator,
    t60_s: float,
    brightness: float,
    pluck_position: float,
) -> np.ndarray:
    """A plucked string (Karplus-Strong), vectorised one period at a time.

    ``y[n] = x[n] + rho * (y[n-L] + y[n-L-1]) / 2`` only looks back at least one period, so a
    whole period of output is one numpy expression. The integer delay is tuned exactly
    afterwards by resampling. ``brightness`` (0..1) lowpasses the noise burst; the pluck
    position comb-filters it.
    """
    period = sr / freq
    L = max(2, int(period))
    burst = rng.uniform(-1, 1, L)
    burst = signal.lfilter([brightness], [1, -(1 - brightness)], burst)
    p = max(1, int(pluck_position * L))
    burst[p:] -= burst[:-p].copy()
    rho = 10 ** (-3 / (t60_s * freq))  # per-period loss giving the wanted T60
    n_stretched = int(n_samples * L / period) + 2
    n_periods = n_stretched // L + 2
    y = np.zeros((n_periods + 1) * L + 1)  # y[0] is a zero so that y[n-L-1] exists
    y[1 : L + 1] = burst
    for k in range(1, n_periods):
        start = 1 + k * L
        prev = y[start - L : start]
        prev_minus_one = y[start - L - 1 : start - 1]
        y[start : start + L] = rho * 0.5 * (prev + prev_minus_one)
    y = y[1:]
    # Resample so that the integer period L becomes the exact period.
    positions = np.arange(n_samples) * (L / period)
    return np.interp(positions, np.arange(len(y)), y)


def _additive_note(
    freq: float,
    n_samples: int,
    sr: int,
    partial_amps: np.ndarray,
    decays_s: np.ndarray,
    inharmonicity: float,
    detune_cents: float = 0.0,
) -> np.ndarray:
    """Sum of exponentially decaying partials (piano-like), optionally doubled and detuned.

    Computed in float32: numpy's float32 sin/exp are vectorised and ten times faster.
    """
    t = np.arange(n_samples, dtype=np.float32) / np.float32(sr)
    k = np.arange(1, len(partial_amps) + 1)
    freqs = k * freq * np.sqrt(1 + inharmonicity * k**2)
    keep = freqs < 0.45 * sr
    out = np.zeros(n_samples, dtype=np.float32)
    for f, a, d in zip(freqs[keep], partial_amps[keep], decays_s[keep]):
        envelope = np.float32(a) * np.exp(t * np.float32(-1 / d))
        out += envelope * np.sin(t * np.float32(2 * np.pi * f))
        if detune_cents:
            out += envelope * np.sin(t * np.float32(2 * np.pi * f * 2 ** (detune_cents / 1200)))
    return out.astype(np.float64)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


class _NoteBank:
    """Renders each distinct pitch once and reuses it: parts repeat a dozen pitches."""

    def __init__(self, render: Callable[[float], np.ndarray]):
        self._render = render
        self._cache: dict[float, np.ndarray] = {}

    def __call__(self, midi: float) -> np.ndarray:
        if midi not in self._cache:
            self._cache[midi] = self._render(midi)
        return self._cache[midi]


def _place_notes(
    notes: list[Note], bank: _NoteBank, n_samples: int, sr: int, release_s: float = 0.04
) -> np.ndarray:
    """Add each note's waveform at its onset, cut at its end with a short release."""
    out = np.zeros(n_samples)
    release = max(1, int(release_s * sr))
    fade = np.linspace(1.0, 0.0, release)
    for note in notes:
        wave = bank(note.midi)
        start = int(note.onset * sr)
        length = min(len(wave), int(note.duration * sr) + release, n_samples - start)
        if length <= 0:
            continue
        segment = wave[:length] * note.velocity
        tail = min(release, length)
        segment[length - tail :] *= fade[release - tail :]
        out[start : start + length] += segment
    return out


def _envelope(
    n_samples: int, sr: int, attack_s: float, decay_s: float, sustain: float, release_s: float, note_s: float
) -> np.ndarray:
    """ADSR envelope of a note held for ``note_s`` seconds (length ``n_samples``)."""
    t = np.arange(n_samples) / sr
    env = np.where(t < attack_s, t / attack_s, sustain + (1 - sustain) * np.exp(-(t - attack_s) / decay_s))
    released = t > note_s
    env[released] *= np.exp(-(t[released] - note_s) / release_s)
    return env


def _saw(freq: float, n_samples: int, sr: int, phase0: float) -> np.ndarray:
    return 2.0 * np.mod(phase0 + freq * np.arange(n_samples) / sr, 1.0) - 1.0


def _render_synth(
    notes: list[Note], n_samples: int, sr: int, rng: np.random.Generator, bass: bool
) -> np.ndarray:
    """Detuned sawtooth voices (plus a sine sub for synth bass) through a lowpass filter."""
    detune = rng.uniform(5, 15)
    attack = 0.005 if bass else rng.uniform(0.005, 0.08)
    out = np.zeros(n_samples)
    for note in notes:
        start = int(note.onset * sr)
        length = min(int((note.duration + 0.15) * sr), n_samples - start)
        if length <= 0:
            continue
        freq = float(_midi_hz(note.midi))
        voice = (
            sum(_saw(freq * 2 ** (c / 1200), length, sr, rng.random()) for c in (-detune, 0.0, detune)) / 3
        )
        if bass:
            sub = np.sin(np.arange(length, dtype=np.float32) * np.float32(2 * np.pi * freq / sr))
            voice = 0.6 * voice + 0.8 * sub
        env = _envelope(length, sr, attack, 0.25, 0.6, 0.06, note.duration)
        out[start : start + length] += note.velocity * env * voice
    cutoff = rng.uniform(500, 1200) if bass else rng.uniform(1500, 5000)
    sos = signal.butter(2, cutoff, "low", fs=sr, output="sos")
    return signal.sosfilt(sos, out)


# Formant frequencies (Hz) and bandwidths of five vowels, adult male; female x 1.15.
_VOWELS = {
    "a": ((730, 1090, 2440), (90, 110, 160)),
    "e": ((530, 1840, 2480), (70, 100, 150)),
    "i": ((270, 2290, 3010), (60, 100, 160)),
    "o": ((570, 840, 2410), (80, 90, 150)),
    "u": ((300, 870, 2240), (60, 90, 140)),
}
_FORMANT_GAINS = (1.0, 0.7, 0.5)


def _render_voice(
    notes: list[Note], n_samples: int, sr: int, rng: np.random.Generator, label: str
) -> np.ndarray:
    """Formant synthesis: a glottal pulse train following the notes through vowel resonators.

    Pitch glides between notes and has vibrato (singers) or speech-like jitter (rapper);
    each note gets a vowel, crossfaded; some notes start with a sibilant noise burst; breath
    noise is mixed in, much more for the rapper.
    """
    rapper = label == "male rapper"
    formant_scale = 1.15 if label == "female singer" else 1.0
    vowel_names = list(_VOWELS)
    sibilant_length = int(0.07 * sr)
    sibilant_shape = np.hanning(sibilant_length)
    pitch = np.full(n_samples, np.nan)
    gate = np.zeros(n_samples)
    onset_bursts = np.zeros(n_samples)
    vowel_starts, vowel_ids = [0], [0]
    for note in notes:
        start = int(note.onset * sr)
        stop = min(n_samples, start + int(note.duration * sr))
        if stop <= start:
            continue
        pitch[start:stop] = note.midi
        gate[start:stop] = note.velocity
        vowel_starts.append(start)
        vowel_ids.append(int(rng.integers(len(vowel_names))))
        if rng.random() < (0.5 if rapper else 0.25):
            end = min(n_samples, start + sibilant_length)
            onset_bursts[start:end] += note.velocity * sibilant_shape[: end - start]
    known = ~np.isnan(pitch)
    if not known.any():
        return np.zeros(n_samples)
    # Each sample sings the vowel of the latest note that started (vowels hold through rests).
    vowel_of_sample = np.asarray(vowel_ids)[
        np.searchsorted(vowel_starts, np.arange(n_samples), side="right") - 1
    ]
    # Hold the pitch through rests, then glide (portamento) with a one-pole smoother.
    index = np.where(known, np.arange(n_samples), 0)
    np.maximum.accumulate(index, out=index)
    first = int(np.argmax(known))
    pitch = pitch[index]
    pitch[:first] = pitch[first]
    glide = math.exp(-1 / ((0.02 if rapper else 0.04) * sr))
    pitch = signal.lfilter([1 - glide], [1, -glide], pitch, zi=[pitch[0] * glide])[0]
    drift = signal.lfilter([0.001], [1, -0.999], rng.standard_normal(n_samples)) * 0.3
    if rapper:
        pitch += 3 * drift
    else:
        rate, depth = rng.uniform(4.8, 6.2), rng.uniform(0.25, 0.5)
        vibrato_phase = np.arange(n_samples, dtype=np.float32) * np.float32(2 * np.pi * rate / sr)
        pitch += depth * np.sin(vibrato_phase) + drift
    f0 = _midi_hz(pitch)
    # Glottal flow: Rosenberg's pulse (slow opening, quicker closing, then closed); its
    # derivative (what radiates from the lips) is the excitation, plus breath noise.
    phase = np.cumsum(f0 / sr)
    phase = (phase - np.floor(phase)).astype(np.float32)  # float32: fast cos below
    opening, closing = np.float32(0.4), np.float32(0.16)
    flow = np.where(
        phase < opening,
        0.5 * (1 - np.cos(np.float32(np.pi) * phase / opening)),
        np.cos(np.float32(np.pi / 2) * np.clip(phase - opening, 0, closing) / closing),
    )
    flow = flow.astype(np.float64)
    glottal = np.diff(flow, prepend=0.0) * (sr / 1000)
    breathiness = 0.25 if rapper else 0.05
    noise = rng.standard_normal(n_samples)
    source = glottal + breathiness * noise * (0.5 + flow)
    # Smooth gate (attack/release) and vowel weights, then filter once per vowel.
    smooth = math.exp(-1 / (0.03 * sr))
    amplitude = signal.lfilter([1 - smooth], [1, -smooth], gate)
    voice = np.zeros(n_samples)
    audible = amplitude > 1e-5
    for v, name in enumerate(vowel_names):
        is_vowel = vowel_of_sample == v
        if not is_vowel.any():
            continue
        weight = signal.lfilter([1 - smooth], [1, -smooth], is_vowel.astype(float))
        resonators = [
            signal.iirpeak(f * formant_scale, f * formant_scale / bw, fs=sr) for f, bw in zip(*_VOWELS[name])
        ]
        # Filter only where this vowel is heard: a fraction of the track, much faster.
        for start, stop in _runs(audible & (weight > 1e-3)):
            segment = source[start:stop]
            filtered = sum(g * signal.lfilter(b, a, segment) for (b, a), g in zip(resonators, _FORMANT_GAINS))
            voice[start:stop] += weight[start:stop] * filtered
    voiced = amplitude * voice
    # The voiced level depends much on pitch (pulse rate, formants): bring it to a common
    # level, then add sibilants at a level relative to it.
    sung = amplitude > 0.1 * amplitude.max()
    voiced *= 0.3 / (np.sqrt(np.mean(voiced[sung] ** 2)) + 1e-12)
    sos = signal.butter(4, 4500, "high", fs=sr, output="sos")
    sibilance = signal.sosfilt(sos, noise) * onset_bursts * (0.15 if rapper else 0.06)
    return voiced + sibilance


def render_part(label: str, notes: list[Note], song: Song, rng: np.random.Generator) -> np.ndarray:
    """The dry performance of ``notes`` by the instrument ``label``."""
    sr, n = song.sample_rate, song.n_samples

    def plucked(t60, brightness, length_s, pluck=None):
        pluck_position = pluck if pluck is not None else rng.uniform(0.1, 0.3)
        seed = int(rng.integers(2**31))
        return _NoteBank(
            lambda midi: _karplus_strong(
                float(_midi_hz(midi)),
                int(length_s * sr),
                sr,
                np.random.default_rng([seed, int(midi)]),
                t60,
                brightness,
                pluck_position,
            )
        )

    def tone_control(x, cutoff_hz):  # the instrument's tone knob / pickup: a gentle lowpass
        return signal.sosfilt(signal.butter(2, cutoff_hz, "low", fs=sr, output="sos"), x)

    if label == "electric bass":
        out = _place_notes(notes, plucked(rng.uniform(1.5, 3.0), rng.uniform(0.2, 0.5), 2.0), n, sr)
        out = tone_control(out, rng.uniform(600, 1500))
    elif label in ("clean electric guitar", "distorted electric guitar"):
        out = _place_notes(notes, plucked(rng.uniform(1.5, 3.0), rng.uniform(0.5, 0.8), 2.5), n, sr)
        out = tone_control(out, rng.uniform(2500, 6000))
    elif label == "acoustic guitar":
        out = _place_notes(
            notes, plucked(rng.uniform(2.0, 4.0), rng.uniform(0.7, 0.95), 2.5), n, sr, release_s=0.15
        )
        body = pedalboard.Pedalboard(
            [
                pedalboard.PeakFilter(rng.uniform(95, 120), 6.0, 2.0),
                pedalboard.PeakFilter(rng.uniform(190, 240), 4.0, 2.0),
            ]
        )
        out = body(out.astype(np.float32), sr).astype(np.float64)
    elif label == "banjo":
        out = _place_notes(notes, plucked(rng.uniform(0.5, 0.9), 0.95, 1.0, pluck=0.08), n, sr, release_s=0.1)
    elif label in ("piano", "tack piano"):
        tack = label == "tack piano"
        decay = rng.uniform(1.0, 2.0) * (0.6 if tack else 1.0)
        k = np.arange(1, 13)

        def piano_note(midi):
            amps = 1.0 / k ** (1.0 if tack else 1.4)
            return _additive_note(
                float(_midi_hz(midi)),
                int(2.5 * sr),
                sr,
                amps,
                decay / (1 + 0.35 * (k - 1)) * (1.5 - (midi - 36) / 60),
                inharmonicity=2e-4,
                detune_cents=12.0 if tack else 0.0,
            )

        out = _place_notes(notes, _NoteBank(piano_note), n, sr, release_s=0.15)
        hammer = np.zeros(n)
        for note in notes:  # a short broadband thump at each onset
            start = int(note.onset * sr)
            length = min(int(0.01 * sr), n - start)
            if length > 0:
                hammer[start : start + length] += note.velocity * np.hanning(length)
        out += 0.3 * signal.lfilter([1, -0.9], [1], hammer * rng.normal(0, 1, n))
    elif label == "electric piano":
        index0 = rng.uniform(2.0, 4.0)

        def rhodes_note(midi):  # two-operator FM with a decaying index, plus a tine click
            f = float(_midi_hz(midi))
            t = np.arange(int(2.5 * sr), dtype=np.float32) / np.float32(sr)  # float32: fast
            index = np.float32(index0) * np.exp(t / np.float32(-0.3)) + np.float32(0.3)
            carrier = t * np.float32(2 * np.pi * f)
            tine = (
                0.1
                * np.exp(t / np.float32(-0.04))
                * np.sin(t * np.float32(2 * np.pi * min(14 * f, 0.4 * sr)))
            )
            note = np.exp(t / np.float32(-1.2)) * np.sin(carrier + index * np.sin(carrier)) + tine
            return note.astype(np.float64)

        out = _place_notes(notes, _NoteBank(rhodes_note), n, sr, release_s=0.1)
    elif label in ("synthesizer", "synth bass"):
        out = _render_synth(notes, n, sr, rng, bass=label == "synth bass")
    elif label in ("male singer", "female singer", "male rapper"):
        out = _render_voice(notes, n, sr, rng, label)
    else:
        raise ValueError(f"no voice for instrument {label!r}")
    # A few milliseconds of fade at the ends keep the files free of clicks.
    fade = min(n // 2, int(0.01 * sr))
    out[:fade] *= np.linspace(0, 1, fade)
    out[n - fade :] *= np.linspace(1, 0, fade)
    return out
