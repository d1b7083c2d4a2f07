"""The synthetic MedleyDB-layout corpus (stemstore.synth): layout, determinism, known mixing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from stemstore.synth.chains import chain_from_spec, mix_stem, render_stem
from stemstore.synth.corpus import ORIGIN, SynthSummary, synthesize_corpus
from stemstore.synth.microphones import MICS_FOR, draw_mic, record, room_sound
from stemstore.synth.song import part_notes, plan_song
from stemstore.synth.structures import (
    DEFAULT_GROUPS,
    INSTRUMENT_GROUP,
    derive_structures,
    load_structures,
    raw_instruments,
)
from stemstore.synth.voices import render_part

from tests.support import MEDLEYDB_METADATA, require_shared

# Seed 3 with three multitracks draws structures covering all four groups, including a
# distorted electric guitar and a singer: the tests below rely on having them.
SEED = 3
N_MULTITRACKS = 3
SECONDS = 4.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> SynthSummary:
    root = tmp_path_factory.mktemp("synth")
    calls = []
    summary = synthesize_corpus(
        root,
        n_multitracks=N_MULTITRACKS,
        seconds=SECONDS,
        seed=SEED,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[-1] == (N_MULTITRACKS, N_MULTITRACKS)
    return summary


def _multitracks(summary: SynthSummary):
    """(folder, METADATA dict, MIXING dict) of each multitrack."""
    for name in summary.multitracks:
        folder = summary.root / name
        metadata = yaml.safe_load((folder / f"{name}_METADATA.yaml").read_text())
        mixing = json.loads((folder / f"{name}_MIXING.json").read_text())
        yield folder, metadata, mixing


def _stem_and_raw_sum(folder: Path, metadata: dict, stem_id: str, mixing_stem: dict):
    stem = sf.read(folder / metadata["stem_dir"] / mixing_stem["filename"])[0]
    raw_sum = sum(
        10 ** (raw["gain_db"] / 20) * sf.read(folder / metadata["raw_dir"] / raw["filename"])[0]
        for raw in mixing_stem["raw"].values()
    )
    return stem, raw_sum


def _crest_db(x: np.ndarray) -> float:
    """Peak-to-RMS ratio in dB (independent of level, so no loudness matching is needed)."""
    return 20 * np.log10(np.max(np.abs(x)) / np.sqrt(np.mean(x**2)))


def test_layout_follows_medleydb(corpus):
    assert len(corpus.multitracks) == N_MULTITRACKS
    assert all(name.startswith(f"Synth{i:03d}_") for i, name in enumerate(corpus.multitracks, 1))
    n_stems = n_raws = 0
    for folder, metadata, _ in _multitracks(corpus):
        name = folder.name
        assert metadata["artist"] + "_" + metadata["title"] == name
        assert metadata["origin"] == ORIGIN
        assert metadata["genre"]
        assert metadata["stem_dir"] == f"{name}_STEMS" and metadata["raw_dir"] == f"{name}_RAW"
        files = [folder / metadata["mix_filename"]]
        for s, (stem_id, stem) in enumerate(sorted(metadata["stems"].items()), start=1):
            assert stem_id == f"S{s:02d}"
            assert stem["filename"] == f"{name}_STEM_{s:02d}.wav"
            assert stem["instrument"] in INSTRUMENT_GROUP
            assert "component" in stem
            files.append(folder / metadata["stem_dir"] / stem["filename"])
            n_stems += 1
            for r, (raw_id, raw) in enumerate(sorted(stem["raw"].items()), start=1):
                assert raw_id == f"R{r:02d}"
                assert raw["filename"] == f"{name}_RAW_{s:02d}_{r:02d}.wav"
                assert raw["instrument"] in INSTRUMENT_GROUP
                files.append(folder / metadata["raw_dir"] / raw["filename"])
                n_raws += 1
        for path in files:
            info = sf.info(str(path))
            assert info.samplerate == 44100 and info.channels == 1
            assert info.subtype == "PCM_24"
            assert info.frames == int(SECONDS * 44100)
    assert (n_stems, n_raws) == (corpus.n_stems, corpus.n_raws)
    groups = {INSTRUMENT_GROUP[i] for i in corpus.stems_per_instrument}
    assert groups == set(DEFAULT_GROUPS)


def test_audio_is_sane(corpus):
    for folder, metadata, _ in _multitracks(corpus):
        for stem in metadata["stems"].values():
            paths = [folder / metadata["stem_dir"] / stem["filename"]]
            paths += [folder / metadata["raw_dir"] / r["filename"] for r in stem["raw"].values()]
            for path in paths:
                audio = sf.read(path)[0]
                assert np.isfinite(audio).all()
                assert 0.01 < np.max(np.abs(audio)) < 1.0, path.name


def test_same_seed_same_bytes_and_other_seed_differs(corpus, tmp_path):
    # One process here, two in the fixture: the files must not depend on it either.
    again = synthesize_corpus(
        tmp_path / "again", n_multitracks=N_MULTITRACKS, seconds=SECONDS, seed=SEED, workers=1
    )
    first_files = sorted(p.relative_to(corpus.root) for p in corpus.root.rglob("*") if p.is_file())
    again_files = sorted(p.relative_to(again.root) for p in again.root.rglob("*") if p.is_file())
    assert first_files == again_files
    for relative in first_files:
        assert (corpus.root / relative).read_bytes() == (again.root / relative).read_bytes(), relative

    other = synthesize_corpus(tmp_path / "other", n_multitracks=1, seconds=SECONDS, seed=SEED + 1, workers=1)
    other_stem = next((other.root / other.multitracks[0]).rglob("*_STEM_01.wav")).read_bytes()
    first_stem = next((corpus.root / corpus.multitracks[0]).rglob("*_STEM_01.wav")).read_bytes()
    assert other_stem != first_stem


def test_chain_json_reproduces_every_stem(corpus):
    for folder, metadata, mixing in _multitracks(corpus):
        assert set(mixing["stems"]) == set(metadata["stems"])
        for stem_id, mixing_stem in mixing["stems"].items():
            assert mixing_stem["instrument"] == metadata["stems"][stem_id]["instrument"]
            assert set(mixing_stem["raw"]) == set(metadata["stems"][stem_id]["raw"])
            chain = mixing_stem["chain"]
            assert chain[0]["role"] == "trim" and chain[-1]["role"] == "fader"
            assert any(step["plugin"] == "Compressor" for step in chain)
            for step in chain:
                assert step["params"], step
            raws = [
                sf.read(folder / metadata["raw_dir"] / raw["filename"])[0]
                for raw in mixing_stem["raw"].values()
            ]
            gains = [raw["gain_db"] for raw in mixing_stem["raw"].values()]
            rendered = render_stem(raws, gains, chain, mixing["sample_rate"])
            stem = sf.read(folder / metadata["stem_dir"] / mixing_stem["filename"])[0]
            # Equal up to 24-bit quantisation of the stem file.
            np.testing.assert_allclose(rendered, stem, atol=2**-23)


def test_mix_is_the_sum_of_the_stems(corpus):
    for folder, metadata, mixing in _multitracks(corpus):
        stems = sum(
            sf.read(folder / metadata["stem_dir"] / s["filename"])[0] for s in metadata["stems"].values()
        )
        mix = sf.read(folder / metadata["mix_filename"])[0]
        np.testing.assert_allclose(mix, 10 ** (mixing["mix"]["gain_db"] / 20) * stems, atol=2**-22)


def test_peak_limited_stems_have_less_dynamic_range_than_their_raws(corpus):
    checked = 0
    for folder, metadata, mixing in _multitracks(corpus):
        for stem_id, mixing_stem in mixing["stems"].items():
            if not any(step["role"] == "peak limiter" for step in mixing_stem["chain"]):
                continue
            stem, raw_sum = _stem_and_raw_sum(folder, metadata, stem_id, mixing_stem)
            assert _crest_db(stem) < _crest_db(raw_sum) - 0.5, (folder.name, stem_id)
            checked += 1
    assert checked >= 2  # the bass and the vocals at least


def test_distorted_guitar_gains_harmonics_and_loses_crest(corpus):
    checked = 0
    for folder, metadata, mixing in _multitracks(corpus):
        for stem_id, mixing_stem in mixing["stems"].items():
            if mixing_stem["instrument"] != "distorted electric guitar":
                continue
            chain = mixing_stem["chain"]
            assert any(step["plugin"] == "Distortion" for step in chain)
            stem, raw_sum = _stem_and_raw_sum(folder, metadata, stem_id, mixing_stem)
            assert _crest_db(stem) < _crest_db(raw_sum) - 3.0
            # A sine probe: the chain adds harmonics, and the Distortion is why.
            clean = [step for step in chain if step["plugin"] != "Distortion"]
            assert _thd(chain) > 0.05 and _thd(chain) > 5 * _thd(clean)
            checked += 1
    assert checked >= 1


def _thd(chain: list[dict], sr: int = 44100) -> float:
    """Total harmonic distortion of a chain on a 220 Hz sine (steady state)."""
    t = np.arange(sr) / sr
    y = chain_from_spec(chain)((0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    y = y[sr // 2 :] * np.hanning(sr - sr // 2)
    power = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    fundamental = power[(freqs > 200) & (freqs < 240)].sum()
    return float(np.sqrt(power[freqs > 300].sum() / fundamental))


def test_mixing_json_records_the_ground_truth(corpus):
    for _, _, mixing in _multitracks(corpus):
        assert mixing["sample_rate"] == 44100 and mixing["subtype"] == "PCM_24"
        assert {"tempo_bpm", "key", "room_size"} <= set(mixing["song"])
        for mixing_stem in mixing["stems"].values():
            assert mixing_stem["group"] == INSTRUMENT_GROUP[mixing_stem["instrument"]]
            for raw in mixing_stem["raw"].values():
                assert raw["mic"]["kind"] in {"di", "close", "amp", "room"}


@pytest.mark.parametrize("instrument", sorted(INSTRUMENT_GROUP))
def test_every_instrument_plays_and_is_mixed(instrument):
    """Structures rarely draw a banjo or a rapper: render each instrument directly."""
    rng = np.random.default_rng(0)
    song = plan_song(rng, 3.0, 44100)
    notes = part_notes(instrument, song, rng)
    assert notes
    performance = render_part(instrument, notes, song, rng)
    assert performance.shape == (song.n_samples,) and np.isfinite(performance).all()
    assert np.max(np.abs(performance)) > 0
    raw = record(
        performance,
        room_sound(performance, 0.5, 44100),
        draw_mic(MICS_FOR[instrument][-1], rng),
        44100,
        rng,
    )
    stem, gains, chain = mix_stem([raw], instrument, 44100, rng)
    assert np.isfinite(stem).all() and 0 < np.max(np.abs(stem)) < 1


def test_shipped_structures_match_medleydb_metadata():
    metadata_dir = require_shared(MEDLEYDB_METADATA)
    assert load_structures() == derive_structures(metadata_dir)


def test_structures_only_hold_group_instruments():
    structures = load_structures()
    assert len(structures) > 200
    for structure in structures:
        assert structure["stems"] and structure["genre"]
        for stem in structure["stems"]:
            assert stem["instrument"] in INSTRUMENT_GROUP
            labels = raw_instruments(stem)
            assert len(labels) == stem["n_raw"] >= 1
            assert all(label in INSTRUMENT_GROUP for label in labels)
