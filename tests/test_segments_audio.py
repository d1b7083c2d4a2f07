"""Segment audio (docs/method.md, section 2): loading, highest-energy windows, pre-processing."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from stemstore.audio import (
    SAMPLE_RATE,
    AudioError,
    highest_energy_window,
    is_silent,
    level_db,
    load_mono,
    preprocess,
    window_energies,
    window_energy,
)

RNG_SEED = 1234


def _sine(freq_hz: float, seconds: float, amplitude: float = 0.5, sr: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _dominant_frequency(signal: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    return float(np.fft.rfftfreq(signal.size, 1.0 / sr)[np.argmax(spectrum)])


# ---------------------------------------------------------------------------- energy windows


def test_highest_energy_window_finds_a_loud_burst_at_its_position():
    rng = np.random.default_rng(RNG_SEED)
    signal = rng.normal(0.0, 0.01, 20 * SAMPLE_RATE).astype(np.float32)
    burst_start, window = int(7.3 * SAMPLE_RATE), 2 * SAMPLE_RATE
    signal[burst_start : burst_start + window] += rng.normal(0.0, 0.5, window).astype(np.float32)

    start = highest_energy_window(signal, window)

    assert abs(start - burst_start) <= 50  # the noise floor may shift it by a few samples
    assert window_energy(signal, start, window) == pytest.approx(
        window_energy(signal, burst_start, window), rel=1e-3
    )


def test_highest_energy_window_prefers_the_louder_of_two_bursts():
    signal = np.zeros(30 * SAMPLE_RATE, dtype=np.float32)
    window = 10 * SAMPLE_RATE
    signal[2 * SAMPLE_RATE : 4 * SAMPLE_RATE] = 0.3
    signal[20 * SAMPLE_RATE : 22 * SAMPLE_RATE] = 0.6
    start = highest_energy_window(signal, window)
    # Every window containing the whole louder burst is optimal; the earliest one is returned.
    assert start == 12 * SAMPLE_RATE


def test_window_energies_match_brute_force():
    rng = np.random.default_rng(RNG_SEED)
    signal = rng.normal(size=500).astype(np.float32)
    energies = window_energies(signal, 37)
    brute = [float(np.sum(signal[i : i + 37].astype(np.float64) ** 2)) for i in range(500 - 37 + 1)]
    np.testing.assert_allclose(energies, brute, rtol=1e-9, atol=1e-9)
    assert window_energy(signal, 100, 37) == pytest.approx(brute[100], rel=1e-9)


def test_signal_shorter_than_the_window_is_rejected():
    with pytest.raises(ValueError):
        highest_energy_window(np.ones(100, dtype=np.float32), 101)
    with pytest.raises(ValueError):
        window_energy(np.ones(100, dtype=np.float32), 50, 60)


def test_silence_detection():
    assert is_silent(np.zeros(SAMPLE_RATE, dtype=np.float32))
    assert level_db(np.zeros(10, dtype=np.float32)) == float("-inf")
    quiet = np.random.default_rng(RNG_SEED).normal(0.0, 1e-3, SAMPLE_RATE).astype(np.float32)
    assert not is_silent(quiet)  # -60 dB is quiet, not silent
    assert level_db(quiet) == pytest.approx(-60.0, abs=0.5)
    assert is_silent(quiet, threshold_db=-50.0)


# ---------------------------------------------------------------------------- loading


def test_load_mono_resamples_48k_stereo_to_44k1_mono(tmp_path):
    sr_in, seconds = 48000, 2.0
    left = _sine(440.0, seconds, amplitude=0.4, sr=sr_in)
    right = _sine(440.0, seconds, amplitude=0.2, sr=sr_in)
    path = tmp_path / "stereo48k.wav"
    sf.write(path, np.stack([left, right], axis=1), sr_in, subtype="PCM_24")

    audio = load_mono(path)

    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - int(seconds * SAMPLE_RATE)) <= 64  # resampler edge effects only
    assert _dominant_frequency(audio) == pytest.approx(440.0, abs=2.0)
    # A mix of 0.4 and 0.2 in-phase sines is a 0.3 sine: RMS 0.3 / sqrt(2).
    middle = audio[SAMPLE_RATE // 4 : -SAMPLE_RATE // 4]
    assert np.sqrt(np.mean(middle.astype(np.float64) ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.02)


def test_load_mono_keeps_44k1_mono_unchanged_in_length(tmp_path):
    signal = _sine(1000.0, 1.0)
    path = tmp_path / "mono.wav"
    sf.write(path, signal, SAMPLE_RATE, subtype="FLOAT")
    audio = load_mono(path)
    assert audio.size == signal.size
    np.testing.assert_allclose(audio, signal, atol=1e-4)


def test_truncated_file_raises_audio_error_naming_it(tmp_path):
    path = tmp_path / "truncated.wav"
    sf.write(path, _sine(440.0, 1.0), SAMPLE_RATE)
    path.write_bytes(path.read_bytes()[:30])  # cut inside the header
    with pytest.raises(AudioError, match="truncated.wav"):
        load_mono(path)


def test_corrupt_and_missing_files_raise_audio_error(tmp_path):
    garbage = tmp_path / "garbage.flac"
    garbage.write_bytes(np.random.default_rng(RNG_SEED).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match="garbage.flac"):
        load_mono(garbage)
    with pytest.raises(AudioError, match="nowhere.wav"):
        load_mono(tmp_path / "nowhere.wav")
    assert issubclass(AudioError, ValueError)


# ---------------------------------------------------------------------------- pre-processing


def test_preprocess_normalises_loudness_with_replaygain():
    rng = np.random.default_rng(RNG_SEED)
    music_like = (_sine(220.0, 5.0, 0.3) + rng.normal(0.0, 0.05, 5 * SAMPLE_RATE)).astype(np.float32)
    quiet = (music_like * 10 ** (-12 / 20)).astype(np.float32)

    loud_out, loud_gain = preprocess(music_like)
    quiet_out, quiet_gain = preprocess(quiet)

    assert loud_out.dtype == np.float32 and loud_out.size == music_like.size
    assert quiet_gain - loud_gain == pytest.approx(12.0, abs=0.1)
    assert level_db(quiet_out) == pytest.approx(level_db(loud_out), abs=0.1)


def test_preprocess_applies_the_equal_loudness_filter():
    # The equal-loudness filter cuts low frequencies much more than 1 kHz.
    low, _ = preprocess(_sine(40.0, 3.0), normalise=False)
    mid, _ = preprocess(_sine(1000.0, 3.0), normalise=False)
    steady = slice(SAMPLE_RATE, None)  # skip the filter's start-up transient
    assert level_db(mid[steady]) - level_db(low[steady]) > 10.0


def test_preprocess_without_normalisation_applies_no_gain():
    _, gain = preprocess(_sine(1000.0, 1.0), normalise=False)
    assert gain == 0.0


def test_preprocess_rejects_silence():
    with pytest.raises(ValueError):
        preprocess(np.zeros(SAMPLE_RATE, dtype=np.float32))
