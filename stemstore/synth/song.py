"""The song a multitrack plays (tempo, harmony, melody, dynamics) and the notes of each part."""

from __future__ import annotations


import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from stemstore.synth.structures import INSTRUMENT_GROUP


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


def plan_song(rng: np.random.Generator, seconds: float, sample_rate: int) -> Song:
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


def part_notes(instrument: str, song: Song, rng: np.random.Generator, every_bar: bool = False) -> list[Note]:
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
        return part_notes(instrument, song, rng, every_bar=True)
    return notes
