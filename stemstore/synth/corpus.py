"""A synthetic multitrack corpus in MedleyDB's layout, with known mixing.

There is no real audio on the machines this project is developed and tested on, and a test of
stem-processing research needs multitracks whose raw -> stem transformation is *known*.
:func:`synthesize_corpus` writes such a corpus::

    <root>/Synth001_Amber/
        Synth001_Amber_METADATA.yaml      MedleyDB schema (artist, title, genre, stems, ...)
        Synth001_Amber_MIXING.json        ground truth: song plan, microphones, stem chains
        Synth001_Amber_MIX.wav            sum of the stems (times one recorded mix-bus gain)
        Synth001_Amber_STEMS/Synth001_Amber_STEM_01.wav ...
        Synth001_Amber_RAW/Synth001_Amber_RAW_01_01.wav ...

All audio is mono, 24-bit PCM WAV, at ``sample_rate`` (44.1 kHz by default).

How a multitrack is made:

1. **Structure.** Which stems a multitrack has, their instruments and how many raw tracks each
   stem has, come from a real MedleyDB multitrack, restricted to the four default instrument
   groups (:data:`DEFAULT_GROUPS`). The structures travel inside the package as
   ``stemstore/data/medleydb_structures.json``; :func:`derive_structures` recomputes them from
   MedleyDB metadata files (used once, to write that file, and by the tests to check it).
2. **Song.** One tempo, key, chord progression, melody and per-bar energy per multitrack, so
   the parts are musically related.
3. **Performance.** Each stem gets a part (bass line, strums, chords, melody, rap) rendered by an
   instrument voice: Karplus-Strong plucked strings (bass, guitars, banjo), additive piano,
   FM electric piano, detuned-saw synthesizers, formant-synthesised voices.
4. **Raw tracks.** Each raw track records the performance through a "microphone" (DI, close
   mic, amp mic, room mic): its own delay, filtering, saturation, share of the room's reverb
   (one room per multitrack, pedalboard.Reverb), noise floor and level. Vocal raws are
   separate takes (doubles, sometimes a harmony) rather than extra microphones.
5. **Stem.** ``stem = chain(sum_i gain_i * raw_i)`` where ``chain`` is a pedalboard chain
   typical of the instrument group (trim, EQ, compression, distortion, de-essing, makeup,
   fader) with parameters drawn from the seed. The raws summed are the *written* (24-bit
   quantised) raws, so ``render_stem`` on the files reproduces the stem.

The chain of every stem, with all parameters, is written to ``<Artist>_<Title>_MIXING.json``
(one file per multitrack, beside the METADATA file); :func:`chain_from_spec` turns a chain spec
back into a ``pedalboard.Pedalboard``.

Everything is deterministic for a seed: same arguments, byte-identical files (on one machine
and software stack: float32 maths may round differently on other CPUs or numpy builds). Each
multitrack draws from its own child of ``numpy.random.SeedSequence(seed)``, so multitracks may
be made in parallel processes without changing the result.

Regenerate the shipped structures with
``python -m stemstore.synth.corpus <MedleyDB metadata dir>`` (the installed package never reads it).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import NamedTuple
from collections.abc import Callable

import numpy as np
import pedalboard
import soundfile as sf
import yaml
from scipy import signal

#: The default ("paper") instrument groups: group name -> MedleyDB instrument labels.
DEFAULT_GROUPS: dict[str, tuple[str, ...]] = {
    "bass": ("electric bass", "synth bass"),
    "guitar": ("clean electric guitar", "acoustic guitar", "distorted electric guitar", "banjo"),
    "vocal": ("male singer", "female singer", "male rapper"),
    "keys": ("piano", "synthesizer", "tack piano", "electric piano"),
}
#: Instrument label -> group name.
INSTRUMENT_GROUP: dict[str, str] = {
    label: group for group, labels in DEFAULT_GROUPS.items() for label in labels
}

STRUCTURES_FILE = "medleydb_structures.json"
ORIGIN = "stemstore synth"
WAV_SUBTYPE = "PCM_24"
_PCM24_STEP = 1.0 / (1 << 23)

ProgressCallback = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# 1. Structures from real MedleyDB metadata
# --------------------------------------------------------------------------------------------


def derive_structures(metadata_dir: Path | str) -> list[dict]:
    """The multitrack structures of MedleyDB, restricted to the default instrument groups.

    Reads every ``*_METADATA.yaml`` in ``metadata_dir`` (sorted by file name) and returns, for
    each multitrack with at least one stem in :data:`DEFAULT_GROUPS`::

        {"name": "<Artist>_<Title>", "genre": ..., "stems": [
            {"instrument": "electric bass", "component": "bass", "n_raw": 2}, ...]}

    A stem whose raw tracks carry other labels than its own also lists them all, in order,
    as ``"raw_instruments"`` (see :func:`raw_instruments`).

    Rules (judgement calls, kept simple):

    * a stem counts if its instrument is a single label in the groups; stems labelled with a
      list of instruments (a handful in MedleyDB, e.g. ``[male singer, vocalists]``) are mixed
      sources and are skipped, as are stems without raw tracks;
    * a raw track keeps its own label if that label is in the groups (a "clean electric guitar"
      DI under a "distorted electric guitar" stem is real); any other raw label (e.g.
      "fx/processed sound") is replaced by the stem's label, so the synthetic corpus only
      holds the four groups' instruments.
    """
    structures = []
    for path in sorted(Path(metadata_dir).glob("*_METADATA.yaml")):
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
        stems = []
        for stem_id in sorted(meta.get("stems") or {}):
            stem = meta["stems"][stem_id]
            label = stem.get("instrument")
            raws = stem.get("raw") or {}
            if not isinstance(label, str) or label not in INSTRUMENT_GROUP or not raws:
                continue
            raw_labels = []
            for raw_id in sorted(raws):
                raw_label = raws[raw_id].get("instrument")
                in_groups = isinstance(raw_label, str) and raw_label in INSTRUMENT_GROUP
                raw_labels.append(raw_label if in_groups else label)
            entry = {"instrument": label, "component": stem.get("component") or "", "n_raw": len(raw_labels)}
            if any(raw_label != label for raw_label in raw_labels):
                entry["raw_instruments"] = raw_labels
            stems.append(entry)
        if stems:
            name = path.name[: -len("_METADATA.yaml")]
            structures.append({"name": name, "genre": str(meta.get("genre") or ""), "stems": stems})
    return structures


def raw_instruments(stem: dict) -> list[str]:
    """The instrument labels of a structure stem's raw tracks, in order."""
    return stem.get("raw_instruments") or [stem["instrument"]] * stem["n_raw"]


def write_structures(structures: list[dict], path: Path | str) -> None:
    """Write structures as the package's JSON file: a header, then one multitrack per line."""
    lines = [json.dumps(s, ensure_ascii=False, separators=(",", ":")) for s in structures]
    header = {
        "description": "Structures of the MedleyDB multitracks (metadata: MIT licence) restricted "
        "to the default instrument groups; see stemstore.synth.corpus.derive_structures.",
        "groups": {group: list(labels) for group, labels in DEFAULT_GROUPS.items()},
    }
    text = json.dumps(header, ensure_ascii=False)[:-1]
    text += ',\n"structures":[\n' + ",\n".join(lines) + "\n]}\n"
    Path(path).write_text(text, encoding="utf-8")


def load_structures() -> list[dict]:
    """The structures shipped with the package (``stemstore/data/medleydb_structures.json``)."""
    text = resources.files("stemstore.data").joinpath(STRUCTURES_FILE).read_text(encoding="utf-8")
    return json.loads(text)["structures"]


# --------------------------------------------------------------------------------------------
# 2. The song: tempo, harmony, melody, dynamics shared by all parts of a multitrack
# --------------------------------------------------------------------------------------------


class Note(NamedTuple):
    onset: float  # seconds
    duration: float  # seconds
    midi: float  # MIDI pitch (may be fractional for speech)
    velocity: float  # 0..1


_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
# Common progressions as 0-based scale degrees, one chord per bar.
_PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 3), (5, 3, 0, 4), (0, 5, 3, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2)),
}
_PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Melody rhythms for one bar as (start, length) in eighth notes.
_MELODY_RHYTHMS = (
    ((0, 2), (2, 2), (4, 3)),
    ((0, 1), (1, 1), (2, 2), (4, 2), (6, 2)),
    ((1, 1), (2, 1), (3, 3), (6, 2)),
    ((0, 3), (3, 1), (4, 4)),
    ((0, 2), (2, 1), (3, 1), (4, 1), (5, 3)),
)


@dataclass
class Song:
    """The musical plan of one multitrack."""

    sample_rate: int
    n_samples: int
    tempo_bpm: float
    root: int  # pitch class of the key, 0 = C
    mode: str  # "major" or "minor"
    progression: tuple[int, ...]  # scale degrees, one per bar, repeating
    bar_energy: np.ndarray  # 0..1 per bar: verse/chorus dynamics
    melody: list[Note]  # in a female-singer register; others transpose it
    room_size: float = 0.5  # of the recording room (pedalboard.Reverb's room_size)

    @property
    def beat_s(self) -> float:
        return 60.0 / self.tempo_bpm

    @property
    def bar_s(self) -> float:
        return 4 * self.beat_s

    @property
    def n_bars(self) -> int:
        return len(self.bar_energy)

    @property
    def scale(self) -> tuple[int, ...]:
        return _MAJOR if self.mode == "major" else _MINOR

    def chord(self, bar: int) -> list[int]:
        """Pitch classes (root, third, fifth) of the chord of ``bar``."""
        degree = self.progression[bar % len(self.progression)]
        scale = self.scale
        return [(self.root + scale[(degree + step) % 7]) % 12 for step in (0, 2, 4)]

    def scale_pitches(self, low: int, high: int) -> list[int]:
        return [m for m in range(low, high + 1) if (m - self.root) % 12 in self.scale]

    def describe(self) -> dict:
        return {
            "tempo_bpm": round(self.tempo_bpm, 2),
            "key": f"{_PITCH_NAMES[self.root]} {self.mode}",
            "progression_degrees": [d + 1 for d in self.progression],
            "bar_energy": [round(float(e), 3) for e in self.bar_energy],
            "room_size": self.room_size,
        }


def _plan_song(rng: np.random.Generator, seconds: float, sample_rate: int) -> Song:
    tempo = float(rng.uniform(80, 140))
    mode = "major" if rng.random() < 0.6 else "minor"
    progression = _PROGRESSIONS[mode][rng.integers(len(_PROGRESSIONS[mode]))]
    n_bars = int(math.ceil(seconds / (4 * 60.0 / tempo))) + 1
    # Sections of four bars alternate between quieter verses and louder choruses.
    section_level = [
        0.6 + 0.15 * rng.random() if s % 2 == 0 else 0.9 + 0.1 * rng.random() for s in range(n_bars // 4 + 1)
    ]
    bar_energy = np.array([section_level[b // 4] for b in range(n_bars)])
    song = Song(
        sample_rate,
        int(round(seconds * sample_rate)),
        tempo,
        int(rng.integers(12)),
        mode,
        tuple(progression),
        bar_energy,
        [],
        room_size=round(float(rng.uniform(0.2, 0.8)), 3),
    )
    song.melody = _compose_melody(song, rng)
    return song


def _compose_melody(song: Song, rng: np.random.Generator) -> list[Note]:
    """A stepwise melody that lands on chord tones, in phrases of two bars with some rests."""
    pitches = song.scale_pitches(60, 77)
    eighth = song.beat_s / 2
    index = len(pitches) // 2
    notes = []
    for bar in range(song.n_bars):
        if bar % 4 == 3 and rng.random() < 0.7:  # breathe at the end of a phrase
            continue
        chord = song.chord(bar)
        for start, length in _MELODY_RHYTHMS[rng.integers(len(_MELODY_RHYTHMS))]:
            index = int(np.clip(index + rng.integers(-2, 3), 0, len(pitches) - 1))
            if start % 4 == 0:  # strong beats: move to the nearest chord tone
                candidates = [i for i, m in enumerate(pitches) if m % 12 in chord]
                index = min(candidates, key=lambda i: abs(i - index))
            velocity = song.bar_energy[bar] * rng.uniform(0.8, 1.0)
            notes.append(
                Note(bar * song.bar_s + start * eighth, length * eighth * 0.95, pitches[index], velocity)
            )
    return notes


def _bar_active(song: Song, rng: np.random.Generator, p_rest: float) -> np.ndarray:
    """Which bars a part plays: parts sit out some two-bar blocks, as real parts do."""
    blocks = rng.random(song.n_bars // 2 + 1) >= p_rest
    active = np.repeat(blocks, 2)[: song.n_bars]
    active[: min(2, song.n_bars)] |= rng.random() < 0.5  # half the parts start at once
    if not active.any():
        active[:] = True
    return active


def _nearest_octave(pitch_class: int, low: int) -> int:
    """The lowest MIDI pitch of ``pitch_class`` at or above ``low``."""
    return low + (pitch_class - low) % 12


def _voicing(chord: list[int], low: int, high: int, max_notes: int) -> list[int]:
    notes = sorted(m for m in range(low, high + 1) if m % 12 in chord)
    return notes[:max_notes]


# --------------------------------------------------------------------------------------------
# 3. Parts: the notes each instrument plays
# --------------------------------------------------------------------------------------------


def _part_notes(instrument: str, song: Song, rng: np.random.Generator, every_bar: bool = False) -> list[Note]:
    """The notes of one stem's part, in that instrument's register and idiom.

    Parts rest in some bars; a part that would be silent throughout (short songs) is
    drawn again playing in every bar, so that no track is empty.
    """
    beat, bar_s = song.beat_s, song.bar_s
    if every_bar:
        active = np.ones(song.n_bars, dtype=bool)
    else:
        active = _bar_active(song, rng, 0.1 if INSTRUMENT_GROUP[instrument] == "bass" else 0.2)
    notes: list[Note] = []

    def add(bar: int, offset_beats: float, length_beats: float, midi: float, accent=1.0):
        velocity = float(song.bar_energy[bar] * accent * rng.uniform(0.75, 1.0))
        notes.append(Note(bar * bar_s + offset_beats * beat, length_beats * beat, midi, velocity))

    if instrument in ("electric bass", "synth bass"):
        pattern = rng.integers(4)
        for bar in np.flatnonzero(active):
            root = _nearest_octave(song.chord(bar)[0], 28)
            fifth = _nearest_octave(song.chord(bar)[2], root)
            if pattern == 0:  # quarter notes on the root
                steps = [(b, 0.9, root) for b in range(4)]
            elif pattern == 1:  # driving eighths
                steps = [(b / 2, 0.45, root) for b in range(8)]
            elif pattern == 2:  # root, fifth, octave, fifth
                steps = [(0, 0.9, root), (1, 0.9, fifth), (2, 0.9, root + 12), (3, 0.9, fifth)]
            else:  # syncopated
                steps = [(0, 1.4, root), (1.5, 0.45, root), (2, 1.4, fifth), (3.5, 0.45, root + 12)]
            for offset, length, midi in steps:
                add(bar, offset, length, midi, 1.0 if offset == 0 else 0.85)

    elif instrument in ("clean electric guitar", "acoustic guitar", "distorted electric guitar"):
        style = (
            "power"
            if instrument == "distorted electric guitar"
            else ("strum" if instrument == "acoustic guitar" or rng.random() < 0.5 else "arpeggio")
        )
        strums = ((0, 1), (1, 0.5), (1.5, 1), (2.5, 0.5), (3, 1))
        for bar in np.flatnonzero(active):
            chord = song.chord(bar)
            if style == "power":
                root = _nearest_octave(chord[0], 40)
                for eighth in range(8):
                    for midi in (root, root + 7, root + 12):
                        add(bar, eighth / 2, 0.4, midi, 1.0 if eighth % 2 == 0 else 0.8)
            elif style == "strum":
                voicing = _voicing(chord, 52, 72, 5 if instrument == "acoustic guitar" else 4)
                for offset, length in strums:
                    down = offset == int(offset)
                    for k, midi in enumerate(voicing if down else voicing[::-1]):
                        add(bar, offset + 0.012 * k / beat, length, midi, 1.0 if down else 0.7)
            else:
                voicing = _voicing(chord, 55, 76, 4)
                order = voicing + voicing[1:-1][::-1]
                for eighth in range(8):
                    add(bar, eighth / 2, 1.0, order[eighth % len(order)])

    elif instrument == "banjo":
        for bar in np.flatnonzero(active):  # forward rolls in sixteenths
            voicing = _voicing(song.chord(bar), 55, 79, 5)
            for sixteenth in range(16):
                add(
                    bar,
                    sixteenth / 4,
                    0.5,
                    voicing[(sixteenth * 2) % len(voicing)],
                    1.0 if sixteenth % 4 == 0 else 0.75,
                )

    elif instrument in ("piano", "tack piano"):
        stride = instrument == "tack piano" or rng.random() < 0.3
        for bar in np.flatnonzero(active):
            chord = song.chord(bar)
            left = _nearest_octave(chord[0], 36)
            right = _voicing(chord, 55, 74, 4)
            if stride:  # bass on 1 and 3, chord on 2 and 4
                for offset in (0, 2):
                    add(bar, offset, 0.9, left)
                    for midi in right:
                        add(bar, offset + 1, 0.8, midi, 0.8)
            else:  # held chords on 1 and 3 with a fill on 4
                for offset in (0, 2):
                    add(bar, offset, 1.9, left)
                    for midi in right:
                        add(bar, offset, 1.9, midi, 0.9)
                add(
                    bar,
                    3.5,
                    0.5,
                    right[-1] + 2 if (right[-1] + 2 - song.root) % 12 in song.scale else right[-1],
                    0.7,
                )

    elif instrument == "electric piano":
        for bar in np.flatnonzero(active):
            voicing = _voicing(song.chord(bar), 53, 72, 4)
            for offset, length in ((0, 1.4), (1.5, 1.0), (2.5, 1.4)):
                for midi in voicing:
                    add(bar, offset, length, midi, 0.9)

    elif instrument == "synthesizer":
        role = ("pad", "lead", "arp")[rng.integers(3)]
        if role == "lead":
            for note in song.melody:
                bar = int(note.onset // bar_s)
                if bar < song.n_bars and active[bar]:
                    notes.append(note)
        for bar in np.flatnonzero(active):
            if role == "pad":
                for midi in _voicing(song.chord(bar), 48, 67, 4):
                    add(bar, 0, 4.0, midi, 0.8)
            elif role == "arp":
                voicing = _voicing(song.chord(bar), 60, 84, 4)
                for sixteenth in range(16):
                    add(bar, sixteenth / 4, 0.22, voicing[sixteenth % len(voicing)], 0.8)

    elif instrument in ("male singer", "female singer"):
        shift = -12 if instrument == "male singer" else 0
        for note in song.melody:
            bar = int(note.onset // bar_s)
            if bar < song.n_bars and active[bar]:
                notes.append(note._replace(midi=note.midi + shift))

    elif instrument == "male rapper":
        base = float(rng.uniform(43, 48))  # speaking pitch, about 100-130 Hz
        sixteenth = beat / 4
        for bar in np.flatnonzero(active):
            for step in range(16):
                if rng.random() < 0.25:  # rests between words
                    continue
                contour = base + 2.0 * math.cos(math.pi * step / 16) + rng.normal(0, 1.5)
                add(
                    bar,
                    step / 4,
                    0.9 * rng.choice((1, 1, 2)) * sixteenth / beat,
                    contour,
                    1.0 if step % 4 == 0 else 0.8,
                )
    else:
        raise ValueError(f"no part for instrument {instrument!r}")
    # Notes must start (and be heard) at least 0.1 s before the end.
    notes = [n for n in notes if n.onset < song.n_samples / song.sample_rate - 0.1]
    if not notes and not every_bar:
        return _part_notes(instrument, song, rng, every_bar=True)
    return notes


# --------------------------------------------------------------------------------------------
# 4. Voices: notes -> a dry performance signal
# --------------------------------------------------------------------------------------------


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


def _render_part(label: str, notes: list[Note], song: Song, rng: np.random.Generator) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# 5. Microphones: performance -> raw track
# --------------------------------------------------------------------------------------------

# Which microphone records the i-th raw track of an instrument (cycled if there are more).
_MICS_FOR = {
    "electric bass": ("di", "amp", "close"),
    "synth bass": ("di", "di"),
    "clean electric guitar": ("di", "amp", "room"),
    "distorted electric guitar": ("di", "amp", "room"),
    "acoustic guitar": ("close", "close", "room"),
    "banjo": ("close", "close", "room"),
    "piano": ("close", "close", "room"),
    "tack piano": ("close", "close", "room"),
    "electric piano": ("di", "di", "amp"),
    "synthesizer": ("di", "di"),
    "male singer": ("close",),
    "female singer": ("close",),
    "male rapper": ("close",),
}


def _draw_mic(kind: str, rng: np.random.Generator) -> dict:
    """Random parameters of one microphone (or DI) of the given kind."""
    u = lambda lo, hi: round(float(rng.uniform(lo, hi)), 3)  # noqa: E731
    mic = {"kind": kind, "peak_dbfs": u(-18, -4)}
    if kind == "di":
        mic.update(delay_ms=0.0, highpass_hz=20.0, noise_db=u(-85, -75))
    elif kind == "close":
        mic.update(
            delay_ms=u(0.3, 2.0),
            highpass_hz=u(30, 80),
            low_shelf_db=u(-2, 4),
            high_shelf_db=u(-4, 2),
            reverb_wet=u(0.02, 0.08),
            noise_db=u(-72, -62),
        )
    elif kind == "amp":
        mic.update(
            delay_ms=u(1.0, 4.0),
            highpass_hz=u(60, 100),
            lowpass_hz=u(4000, 7000),
            presence_db=u(1, 4),
            drive=u(1.2, 2.5),
            reverb_wet=u(0.02, 0.06),
            noise_db=u(-68, -58),
        )
    elif kind == "room":
        mic.update(
            delay_ms=u(5.0, 20.0),
            highpass_hz=u(40, 80),
            lowpass_hz=u(6000, 12000),
            reverb_wet=u(0.2, 0.4),
            noise_db=u(-62, -52),
        )
    else:
        raise ValueError(kind)
    return mic


def _room_sound(performance: np.ndarray, room_size: float, sr: int) -> np.ndarray:
    """What the room adds to a performance (reverb only, no direct sound)."""
    reverb = pedalboard.Reverb(room_size=room_size, wet_level=1.0, dry_level=0.0, width=0.0)
    return reverb(performance.astype(np.float32), sr).astype(np.float64)


def _record(
    performance: np.ndarray, room: np.ndarray | None, mic: dict, sr: int, rng: np.random.Generator
) -> np.ndarray:
    """The raw track a microphone makes of a performance, quantised to 24 bits.

    ``room`` is the room's reverb of the performance (:func:`_room_sound`), shared by all
    microphones of the performance; each microphone picks up its own share of it.
    """
    n = len(performance)
    if "reverb_wet" in mic:
        performance = (1 - mic["reverb_wet"]) * performance + mic["reverb_wet"] * room
    delay = int(mic["delay_ms"] * sr / 1000)
    x = np.concatenate([np.zeros(delay), performance[: n - delay]])
    if "drive" in mic:  # a mildly overdriven amplifier
        x = np.tanh(mic["drive"] * x / (np.max(np.abs(x)) + 1e-12))
    plugins = [pedalboard.HighpassFilter(mic["highpass_hz"])]
    if "lowpass_hz" in mic:
        plugins.append(pedalboard.LowpassFilter(mic["lowpass_hz"]))
    if "low_shelf_db" in mic:  # proximity effect / placement
        plugins += [
            pedalboard.LowShelfFilter(150.0, mic["low_shelf_db"]),
            pedalboard.HighShelfFilter(6000.0, mic["high_shelf_db"]),
        ]
    if "presence_db" in mic:
        plugins.append(pedalboard.PeakFilter(2000.0, mic["presence_db"], 1.0))
    x = pedalboard.Pedalboard(plugins)(x.astype(np.float32), sr).astype(np.float64)
    x *= 10 ** (mic["peak_dbfs"] / 20) / (np.max(np.abs(x)) + 1e-12)
    # White noise floor (uniform: a quarter of the cost of Gaussian, same spectrum).
    noise = rng.random(n, dtype=np.float32) - np.float32(0.5)
    x += (10 ** (mic["noise_db"] / 20) * math.sqrt(12)) * noise
    return _quantise(x)


def _quantise(x: np.ndarray) -> np.ndarray:
    """Round to the 24-bit PCM grid (what soundfile will write and read back)."""
    return np.clip(np.round(x / _PCM24_STEP), -(1 << 23), (1 << 23) - 1) * _PCM24_STEP


# --------------------------------------------------------------------------------------------
# 6. Mixing chains: raws -> stem
# --------------------------------------------------------------------------------------------


def chain_from_spec(chain: list[dict]) -> pedalboard.Pedalboard:
    """A pedalboard from a chain spec: ``[{"plugin": "Compressor", "params": {...}}, ...]``.

    ``plugin`` is the name of a pedalboard class and ``params`` its constructor's keyword
    arguments; other keys (``role``) are documentation.
    """
    return pedalboard.Pedalboard([getattr(pedalboard, step["plugin"])(**step["params"]) for step in chain])


def render_stem(
    raws: list[np.ndarray], raw_gains_db: list[float], chain: list[dict], sample_rate: int
) -> np.ndarray:
    """``chain(sum_i 10^(gain_i/20) * raw_i)``: how every synthetic stem is made (float32 out)."""
    total = sum(10 ** (g / 20) * np.asarray(r, dtype=np.float64) for r, g in zip(raws, raw_gains_db))
    return chain_from_spec(chain)(np.asarray(total, dtype=np.float32), sample_rate)


def _step(plugin: str, role: str, **params) -> dict:
    return {"plugin": plugin, "role": role, "params": {k: round(float(v), 2) for k, v in params.items()}}


def _peak_limiter(u: Callable[[float, float], float]) -> dict:
    """A fast, high-ratio compressor that catches the transients the main one lets through.

    Its threshold is set by :func:`_mix_stem` to ``above_loud_db`` over the loud level of
    the signal reaching it, as an engineer sets a limiter by ear.
    """
    step = _step(
        "Compressor",
        "peak limiter",
        threshold_db=0.0,
        ratio=u(10, 20),
        attack_ms=u(0.1, 0.5),
        release_ms=u(20, 60),
    )
    step["above_loud_db"] = round(u(3, 6), 2)
    return step


def _draw_chain(instrument: str, rng: np.random.Generator) -> list[dict]:
    """The processing an engineer might apply to a stem of this instrument (after the trim)."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    group = INSTRUMENT_GROUP[instrument]
    chain: list[dict] = []
    if group == "bass":
        chain += [
            _step("HighpassFilter", "rumble cut", cutoff_frequency_hz=u(25, 45)),
            _step("LowShelfFilter", "weight", cutoff_frequency_hz=u(70, 120), gain_db=u(0, 4), q=0.71),
            _step("PeakFilter", "mud cut", cutoff_frequency_hz=u(200, 400), gain_db=u(-6, -2), q=u(0.7, 1.5)),
            _step("PeakFilter", "definition", cutoff_frequency_hz=u(700, 1500), gain_db=u(0, 4), q=1.0),
            _step(
                "Compressor",
                "compression",
                threshold_db=u(-26, -18),
                ratio=u(2, 4) if instrument == "synth bass" else u(3, 6),
                attack_ms=u(0.5, 5),
                release_ms=u(60, 200),
            ),
            _peak_limiter(u),
        ]
    elif group == "guitar":
        chain.append(
            _step(
                "HighpassFilter",
                "low cut",
                cutoff_frequency_hz=u(60, 100) if instrument == "acoustic guitar" else u(70, 120),
            )
        )
        compressor = _step(
            "Compressor",
            "compression",
            threshold_db=u(-26, -16),
            ratio=u(2, 4) if instrument == "acoustic guitar" else u(2.5, 5),
            attack_ms=u(2, 12),
            release_ms=u(80, 250),
        )
        if instrument == "distorted electric guitar":
            # Compression goes before the drive (a pedal into the amp): after heavy distortion
            # there is no dynamics left to compress.
            chain += [
                compressor,
                _step("Distortion", "amp drive", drive_db=u(24, 38)),
                _step("LowpassFilter", "cabinet", cutoff_frequency_hz=u(4500, 7500)),
            ]
        elif instrument == "clean electric guitar" and rng.random() < 0.25:
            chain.append(_step("Distortion", "light drive", drive_db=u(4, 10)))
        chain += [
            _step("PeakFilter", "mud cut", cutoff_frequency_hz=u(200, 500), gain_db=u(-5, -1), q=u(0.8, 1.5)),
            _step(
                "PeakFilter", "presence", cutoff_frequency_hz=u(2000, 4500), gain_db=u(1, 4), q=u(0.7, 1.2)
            ),
        ]
        if instrument in ("acoustic guitar", "banjo"):
            chain.append(
                _step("HighShelfFilter", "air", cutoff_frequency_hz=u(6000, 10000), gain_db=u(0, 3), q=0.71)
            )
        if instrument != "distorted electric guitar":
            chain.append(compressor)
            if rng.random() < 0.5:
                chain.append(_peak_limiter(u))
    elif group == "vocal":
        rapper = instrument == "male rapper"
        chain += [
            _step("HighpassFilter", "low cut", cutoff_frequency_hz=u(80, 140)),
            _step(
                "PeakFilter", "boxiness cut", cutoff_frequency_hz=u(250, 500), gain_db=u(-5, -2), q=u(1, 2)
            ),
            _step(
                "PeakFilter", "presence", cutoff_frequency_hz=u(2500, 5000), gain_db=u(1, 4), q=u(0.7, 1.2)
            ),
            _step(
                "HighShelfFilter", "de-essing", cutoff_frequency_hz=u(5500, 8000), gain_db=u(-6, -2), q=0.71
            ),
            _step(
                "Compressor",
                "compression",
                threshold_db=u(-28, -18),
                ratio=u(4, 8) if rapper else u(3, 6),
                attack_ms=u(0.5, 3),
                release_ms=u(40, 150),
            ),
        ]
        chain.append(_peak_limiter(u))
        if rng.random() < 0.4:
            wet = u(0.05, 0.15)
            chain.append(
                _step("Reverb", "plate", room_size=u(0.3, 0.7), wet_level=wet, dry_level=1 - wet, width=0.0)
            )
    else:  # keys
        chain += [
            _step("HighpassFilter", "low cut", cutoff_frequency_hz=u(30, 80)),
            _step("LowShelfFilter", "low end", cutoff_frequency_hz=u(150, 300), gain_db=u(-4, 0), q=0.71),
            _step("PeakFilter", "mid tone", cutoff_frequency_hz=u(800, 3000), gain_db=u(-3, 3), q=1.0),
            _step(
                "HighShelfFilter", "brilliance", cutoff_frequency_hz=u(5000, 9000), gain_db=u(-1, 3), q=0.71
            ),
            _step(
                "Compressor",
                "compression",
                threshold_db=u(-24, -16),
                ratio=u(1.5, 3.5),
                attack_ms=u(3, 20),
                release_ms=u(100, 300),
            ),
        ]
        if rng.random() < 0.3:
            chain.append(_peak_limiter(u))
    chain.append(_step("Gain", "makeup", gain_db=u(2, 6)))
    return chain


def _peak_db(x: np.ndarray) -> float:
    return 20 * math.log10(float(np.max(np.abs(x))) + 1e-12)


def _loud_level_db(x: np.ndarray, sr: int) -> float:
    """Level of the loud passages: 95th percentile of 50 ms RMS, in dBFS."""
    block = max(1, int(0.05 * sr))
    n_blocks = max(1, len(x) // block)
    padded = np.zeros(n_blocks * block)
    padded[: min(len(x), len(padded))] = x[: len(padded)]
    rms = np.sqrt(np.mean(padded.reshape(n_blocks, block) ** 2, axis=1))
    return 20 * math.log10(float(np.percentile(rms, 95)) + 1e-12)


def _mix_stem(
    raws: list[np.ndarray], instrument: str, sr: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[float], list[dict]]:
    """Make a stem from its raws; returns (stem, raw gains in dB, full chain spec).

    The chain opens with a trim (bringing the loud passages of the raw sum to -20..-16 dBFS
    RMS, as an engineer sets input gain, so that thresholds mean the same for every stem) and
    closes with a fader (stem peak between -6 and -1 dBFS); both are data-dependent and
    recorded like the rest.
    """
    raw_gains_db = [0.0] + [round(float(rng.uniform(-6, 0)), 2) for _ in raws[1:]]
    total = sum(10 ** (g / 20) * r for r, g in zip(raws, raw_gains_db))
    trim_db = rng.uniform(-20, -16) - _loud_level_db(total, sr)
    chain = [_step("Gain", "trim", gain_db=trim_db)] + _draw_chain(instrument, rng)
    # Plugin by plugin (the same as the whole board at once: plugins run one after the other),
    # so that data-dependent settings can look at the signal reaching them.
    stem = np.asarray(total, dtype=np.float32)
    for step in chain:
        if "above_loud_db" in step:
            step["params"]["threshold_db"] = round(_loud_level_db(stem, sr) + step["above_loud_db"], 2)
        stem = chain_from_spec([step])(stem, sr)
    fader = _step("Gain", "fader", gain_db=rng.uniform(-6, -1) - _peak_db(stem))
    chain.append(fader)
    stem = chain_from_spec([fader])(stem, sr)
    return _quantise(stem.astype(np.float64)), raw_gains_db, chain


# --------------------------------------------------------------------------------------------
# 7. The corpus
# --------------------------------------------------------------------------------------------

_TITLES = (
    "Amber",
    "Harbor",
    "Lantern",
    "Meadow",
    "Cinder",
    "Velvet",
    "Orbit",
    "Willow",
    "Tundra",
    "Marble",
    "Ember",
    "Glacier",
    "Hollow",
    "Juniper",
    "Kestrel",
    "Lagoon",
    "Mirage",
    "Nimbus",
    "Oasis",
    "Pebble",
    "Quartz",
    "Riverbed",
    "Saffron",
    "Thistle",
    "Umber",
    "Vesper",
    "Wander",
    "Yonder",
    "Zephyr",
    "Beacon",
    "Cobalt",
    "Driftwood",
    "Echoes",
    "Foxglove",
    "Gossamer",
    "Heron",
    "Ivory",
    "Jasmine",
    "Kaleidoscope",
    "Lullaby",
    "Monsoon",
    "Nocturne",
    "Obsidian",
    "Paper",
    "Quiver",
    "Rosewood",
    "Satellite",
    "Tangerine",
    "Undertow",
    "Voyager",
)


@dataclass
class SynthSummary:
    """What :func:`synthesize_corpus` wrote."""

    root: Path
    seed: int
    sample_rate: int
    seconds: float
    multitracks: list[str]
    n_stems: int
    n_raws: int
    stems_per_instrument: dict[str, int] = field(default_factory=dict)
    raws_per_instrument: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    subtype: str = WAV_SUBTYPE


def _write_wav(path: Path, audio: np.ndarray, sr: int) -> None:
    """Write audio already on the 24-bit grid (see :func:`_quantise`) exactly."""
    counts = np.round(np.asarray(audio) * (1 << 23)).astype(np.int32)
    sf.write(str(path), counts << 8, sr, subtype=WAV_SUBTYPE, format="WAV")


def _vocal_take(notes: list[Note], take: int, song: Song, rng: np.random.Generator) -> list[Note]:
    """The notes of vocal take number ``take``: the part itself first, then doubles (timing
    off by about 10 ms) of which some sing a third above (the next scale note 3+ semitones up).
    """
    if take == 1:
        return notes
    if rng.random() < 0.3:
        scale = song.scale_pitches(0, 127)
        notes = [n._replace(midi=min((p for p in scale if p >= n.midi + 3), default=n.midi)) for n in notes]
    return [n._replace(onset=max(0.0, n.onset + rng.normal(0, 0.01))) for n in notes]


def _synthesize_multitrack(
    root: Path,
    number: int,
    title: str,
    structure: dict,
    seed_sequence: np.random.SeedSequence,
    seconds: float,
    sample_rate: int,
) -> dict:
    """Write one multitrack directory; returns its stems' and raws' instrument labels."""
    rng = np.random.default_rng(seed_sequence)
    artist = f"Synth{number:03d}"
    name = f"{artist}_{title}"
    folder = root / name
    stem_dir, raw_dir = f"{name}_STEMS", f"{name}_RAW"
    (folder / stem_dir).mkdir(parents=True, exist_ok=True)
    (folder / raw_dir).mkdir(parents=True, exist_ok=True)
    song = _plan_song(rng, seconds, sample_rate)

    metadata_stems, mixing_stems = {}, {}
    mix = np.zeros(song.n_samples)
    for s, stem_structure in enumerate(structure["stems"], start=1):
        instrument = stem_structure["instrument"]
        notes = _part_notes(instrument, song, rng)
        performances: dict[str, list] = {}  # raw label -> [dry performance, its room sound]
        raws, metadata_raws, mixing_raws = [], {}, {}
        for r, raw_label in enumerate(raw_instruments(stem_structure), start=1):
            if INSTRUMENT_GROUP[raw_label] == "vocal":  # each vocal raw is its own take
                take_notes = _vocal_take(notes, r, song, rng)
                take = [_render_part(raw_label, take_notes, song, rng), None]
            else:
                if raw_label not in performances:
                    performances[raw_label] = [_render_part(raw_label, notes, song, rng), None]
                take = performances[raw_label]
            kinds = _MICS_FOR[raw_label]
            mic = _draw_mic(kinds[(r - 1) % len(kinds)], rng)
            if "reverb_wet" in mic and take[1] is None:  # the room, once per performance
                take[1] = _room_sound(take[0], song.room_size, sample_rate)
            raw = _record(take[0], take[1], mic, sample_rate, rng)
            raws.append(raw)
            raw_file = f"{name}_RAW_{s:02d}_{r:02d}.wav"
            _write_wav(folder / raw_dir / raw_file, raw, sample_rate)
            metadata_raws[f"R{r:02d}"] = {"filename": raw_file, "instrument": raw_label}
            mixing_raws[f"R{r:02d}"] = {"filename": raw_file, "instrument": raw_label, "mic": mic}

        stem, raw_gains_db, chain = _mix_stem(raws, instrument, sample_rate, rng)
        stem_file = f"{name}_STEM_{s:02d}.wav"
        _write_wav(folder / stem_dir / stem_file, stem, sample_rate)
        mix += stem
        stem_id = f"S{s:02d}"
        metadata_stems[stem_id] = {
            "component": stem_structure["component"],
            "filename": stem_file,
            "instrument": instrument,
            "raw": metadata_raws,
        }
        for raw_id, gain in zip(mixing_raws, raw_gains_db):
            mixing_raws[raw_id]["gain_db"] = gain
        mixing_stems[stem_id] = {
            "filename": stem_file,
            "instrument": instrument,
            "group": INSTRUMENT_GROUP[instrument],
            "n_notes": len(notes),
            "raw": mixing_raws,
            "chain": chain,
        }

    mix_gain_db = round(-1.0 - _peak_db(mix), 2)
    mix_file = f"{name}_MIX.wav"
    _write_wav(folder / mix_file, _quantise(mix * 10 ** (mix_gain_db / 20)), sample_rate)

    vocal = any(INSTRUMENT_GROUP[s["instrument"]] == "vocal" for s in structure["stems"])
    metadata = {
        "album": "stemstore synthetic corpus",
        "artist": artist,
        "composer": [artist],
        "excerpt": "no",
        "genre": structure["genre"],
        "has_bleed": "no",
        "instrumental": "no" if vocal else "yes",
        "mix_filename": mix_file,
        "origin": ORIGIN,
        "producer": ["stemstore.synth.corpus"],
        "raw_dir": raw_dir,
        "stem_dir": stem_dir,
        "stems": metadata_stems,
        "title": title,
        "website": [],
    }
    (folder / f"{name}_METADATA.yaml").write_text(
        yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    mixing = {
        "multitrack": name,
        "structure_from": structure["name"],
        "seed_entropy": seed_sequence.entropy,
        "seed_spawn_key": list(seed_sequence.spawn_key),
        "sample_rate": sample_rate,
        "seconds": seconds,
        "subtype": WAV_SUBTYPE,
        "song": song.describe(),
        "mix": {
            "filename": mix_file,
            "gain_db": mix_gain_db,
            "how": "mix = 10^(gain_db/20) * sum of the stem files",
        },
        "stem_formula": "stem = chain(sum over raws of 10^(gain_db/20) * raw file)",
        "stems": mixing_stems,
    }
    (folder / f"{name}_MIXING.json").write_text(json.dumps(mixing, indent=1) + "\n", encoding="utf-8")
    return {
        "name": name,
        "stems": [s["instrument"] for s in structure["stems"]],
        "raws": [label for s in structure["stems"] for label in raw_instruments(s)],
    }


def synthesize_corpus(
    root: Path | str,
    n_multitracks: int = 20,
    seconds: float = 30.0,
    seed: int = 0,
    sample_rate: int = 44100,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> SynthSummary:
    """Write ``n_multitracks`` synthetic multitracks of ``seconds`` each under ``root``.

    Structures are drawn from the shipped MedleyDB structures with the seed (without
    replacement while there are enough, with replacement beyond). ``progress(done, total)`` is
    called after each multitrack. ``workers`` processes share the work (default: up to 2, the
    CPU count); the files do not depend on it. Existing files of the same names are replaced.
    """
    if sample_rate < 32000:
        raise ValueError(
            f"sample_rate {sample_rate} is too low: the microphone and mixing "
            "filters reach 12 kHz, so at least 32000 Hz is needed"
        )
    started = time.perf_counter()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    structures = load_structures()
    master = np.random.SeedSequence(seed)
    rng = np.random.default_rng(master)
    chosen = rng.choice(len(structures), size=n_multitracks, replace=n_multitracks > len(structures))
    titles = rng.permutation(len(_TITLES))
    children = master.spawn(n_multitracks)
    jobs = [
        (
            root,
            i + 1,
            _TITLES[titles[i % len(_TITLES)]],
            structures[int(chosen[i])],
            children[i],
            float(seconds),
            int(sample_rate),
        )
        for i in range(n_multitracks)
    ]

    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    results: list[dict] = []
    if workers <= 1 or n_multitracks <= 1:
        for done, job in enumerate(jobs, start=1):
            results.append(_synthesize_multitrack(*job))
            if progress:
                progress(done, n_multitracks)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_synthesize_multitrack, *job) for job in jobs]
            for done, future in enumerate(as_completed(futures), start=1):
                future.result()
                if progress:
                    progress(done, n_multitracks)
            results = [f.result() for f in futures]

    stems = Counter(label for r in results for label in r["stems"])
    raws = Counter(label for r in results for label in r["raws"])
    return SynthSummary(
        root=root,
        seed=seed,
        sample_rate=int(sample_rate),
        seconds=float(seconds),
        multitracks=[r["name"] for r in results],
        n_stems=sum(stems.values()),
        n_raws=sum(raws.values()),
        stems_per_instrument=dict(sorted(stems.items())),
        raws_per_instrument=dict(sorted(raws.items())),
        elapsed_s=time.perf_counter() - started,
    )


if __name__ == "__main__":  # regenerate the shipped structures from MedleyDB metadata
    import sys

    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data/medleydb-metadata")
    target = Path(__file__).parent / "data" / STRUCTURES_FILE
    write_structures(derive_structures(source), target)
    print(f"wrote {target}")
