"""The corpus: multitracks written to disk in MedleyDB's layout, with their ground truth."""

from __future__ import annotations


import json
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import numpy as np
import soundfile as sf
import yaml

from stemstore.synth.structures import INSTRUMENT_GROUP, load_structures, raw_instruments
from stemstore.synth.song import Note, Song, part_notes, plan_song
from stemstore.synth.voices import render_part
from stemstore.synth.microphones import MICS_FOR, draw_mic, quantise, record, room_sound
from stemstore.synth.chains import mix_stem, peak_db


ORIGIN = "stemstore synth"
WAV_SUBTYPE = "PCM_24"

ProgressCallback = Callable[[int, int], None]


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
    """Write audio already on the 24-bit grid (see :func:`quantise`) exactly."""
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
    song = plan_song(rng, seconds, sample_rate)

    metadata_stems, mixing_stems = {}, {}
    mix = np.zeros(song.n_samples)
    for s, stem_structure in enumerate(structure["stems"], start=1):
        instrument = stem_structure["instrument"]
        notes = part_notes(instrument, song, rng)
        performances: dict[str, list] = {}  # raw label -> [dry performance, its room sound]
        raws, metadata_raws, mixing_raws = [], {}, {}
        for r, raw_label in enumerate(raw_instruments(stem_structure), start=1):
            if INSTRUMENT_GROUP[raw_label] == "vocal":  # each vocal raw is its own take
                take_notes = _vocal_take(notes, r, song, rng)
                take = [render_part(raw_label, take_notes, song, rng), None]
            else:
                if raw_label not in performances:
                    performances[raw_label] = [render_part(raw_label, notes, song, rng), None]
                take = performances[raw_label]
            kinds = MICS_FOR[raw_label]
            mic = draw_mic(kinds[(r - 1) % len(kinds)], rng)
            if "reverb_wet" in mic and take[1] is None:  # the room, once per performance
                take[1] = room_sound(take[0], song.room_size, sample_rate)
            raw = record(take[0], take[1], mic, sample_rate, rng)
            raws.append(raw)
            raw_file = f"{name}_RAW_{s:02d}_{r:02d}.wav"
            _write_wav(folder / raw_dir / raw_file, raw, sample_rate)
            metadata_raws[f"R{r:02d}"] = {"filename": raw_file, "instrument": raw_label}
            mixing_raws[f"R{r:02d}"] = {"filename": raw_file, "instrument": raw_label, "mic": mic}

        stem, raw_gains_db, chain = mix_stem(raws, instrument, sample_rate, rng)
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

    mix_gain_db = round(-1.0 - peak_db(mix), 2)
    mix_file = f"{name}_MIX.wav"
    _write_wav(folder / mix_file, quantise(mix * 10 ** (mix_gain_db / 20)), sample_rate)

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
