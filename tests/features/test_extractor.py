"""The 1812-feature catalog (METHOD.md section 3), computed with real Essentia."""

from __future__ import annotations

import numpy as np
import pytest

import essentia
import essentia.standard as es
import essentia.streaming as ess
from pedalboard import Compressor, Pedalboard

from stemstore.audio import preprocess
from stemstore.store.catalog import FRAME_STATISTICS, feature_names, load_catalog
from stemstore.analysis.matrix import replace_non_finite
from stemstore.features.extractor import (
    FeatureExtractor,
    bark_loudness_descriptors,
    centred_framing,
    extract_features,
    pool_statistics,
)

SR = 44100
RNG_SEED = 7
#: Upper edges (Hz) of Essentia's 27 Bark bands (Zwicker's critical bands, BarkBands docs).
BARK_UPPER_EDGES_HZ = [
    50,
    100,
    150,
    200,
    300,
    400,
    510,
    630,
    770,
    920,
    1080,
    1270,
    1480,
    1720,
    2000,
    2320,
    2700,
    3150,
    3700,
    4400,
    5300,
    6400,
    7700,
    9500,
    12000,
    15500,
    20500,
]


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return FeatureExtractor()


def _named(extractor: FeatureExtractor, audio: np.ndarray) -> dict[str, float]:
    return dict(zip(feature_names(), extractor.extract(audio)))


def _sine(freq_hz: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _music_like(seconds: float = 6.0) -> np.ndarray:
    """Tones, noise bursts and clicks with changing levels: every descriptor has something."""
    rng = np.random.default_rng(RNG_SEED)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    audio = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 660 * t)
    audio *= 0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)
    for k in range(int(seconds * 2)):  # a percussive hit every 0.5 s
        start = int(k * 0.5 * SR)
        hit = rng.normal(0.0, 0.4, 3000) * np.exp(-np.arange(3000) / 500.0)
        audio[start : start + 3000] += hit[: n - start]
    return audio.astype(np.float32)


# ---------------------------------------------------------------------------- shape and order


def test_extract_returns_every_catalog_feature_in_catalog_order(extractor):
    values = extractor.extract(_music_like(3.0))
    assert values.shape == (1812,) and values.dtype == np.float64
    assert extractor.names == feature_names()
    assert list(load_catalog()["name"]) == list(feature_names())
    assert np.isfinite(values).all()
    # The module-level convenience gives the same numbers.
    np.testing.assert_allclose(extract_features(_music_like(3.0)), values, rtol=1e-9, equal_nan=True)


def test_extraction_is_deterministic_across_calls(extractor):
    # Reused algorithm instances must not carry state from one segment into the next.
    audio = _music_like(3.0)
    first = extractor.extract(audio)
    extractor.extract(_sine(1000.0, 2.0))
    np.testing.assert_array_equal(extractor.extract(audio), first)
    np.testing.assert_array_equal(FeatureExtractor().extract(audio), first)


# ---------------------------------------------------------------------------- spectral sanity


@pytest.mark.parametrize("freq_hz", [440.0, 1000.0, 3000.0])
def test_sine_centroid_and_bark_band(extractor, freq_hz):
    features = _named(extractor, _sine(freq_hz, 3.0))
    assert features["lowLevel.spectral_centroid.mean"] == pytest.approx(freq_hz, rel=0.02)
    assert features["lowLevel.pitch.median"] == pytest.approx(freq_hz, rel=0.01)

    band_means = [features[f"lowLevel.barkbands.mean.{k}"] for k in range(27)]
    expected_band = int(np.searchsorted(BARK_UPPER_EDGES_HZ, freq_hz, side="right"))
    assert int(np.argmax(band_means)) == expected_band


def test_spectral_centroid_and_mfcc_agree_with_direct_essentia_calls(extractor):
    audio = np.random.default_rng(RNG_SEED).normal(0.0, 0.1, 3 * SR).astype(np.float32)
    audio = es.LowPass(cutoffFrequency=4000)(audio)  # a non-flat spectrum
    window = es.Windowing(type="blackmanharris62")
    spectrum = es.Spectrum()
    centroid = es.Centroid(range=SR / 2)
    mfcc = es.MFCC()
    centroids, mfccs = [], []
    for frame in es.FrameGenerator(audio, frameSize=2048, hopSize=1024):
        spec = spectrum(window(frame))
        centroids.append(centroid(spec**2))
        mfccs.append(mfcc(spec)[1])
    mfccs = np.array(mfccs)

    features = _named(extractor, audio)
    assert features["lowLevel.spectral_centroid.mean"] == pytest.approx(np.mean(centroids), rel=1e-5)
    assert features["lowLevel.spectral_centroid.max"] == pytest.approx(np.max(centroids), rel=1e-5)
    for k in (1, 5, 12):  # coefficient 0 is not in the catalog
        assert features[f"lowLevel.mfcc.mean.{k}"] == pytest.approx(mfccs[:, k].mean(), rel=1e-4)
    assert not any(name.startswith("lowLevel.mfcc.") and name.endswith(".0") for name in feature_names())


def test_shared_descriptors_agree_with_essentias_extractor(extractor):
    audio = _music_like(6.0)
    pool = es.Extractor()(audio)
    reference = es.PoolAggregator(defaultStats=list(FRAME_STATISTICS))(pool)
    features = _named(extractor, audio)
    for name in (
        "lowLevel.spectral_centroid.mean",
        "lowLevel.spectral_flux.dmean",
        "lowLevel.hfc.var",
        "lowLevel.dissonance.median",
        "lowLevel.pitch_salience.mean",
        "sfx.inharmonicity.mean",
        "lowLevel.silence_rate_60dB.mean",
        "lowLevel.spectral_complexity.max",
    ):
        assert features[name] == pytest.approx(float(reference[name]), rel=1e-3), name
    for name, index in (
        ("lowLevel.barkbands.mean", 5),
        ("lowLevel.mfcc.stdev", 3),
        ("lowLevel.sccoeffs.mean", 2),
        ("rhythm.beats_loudness_band_ratio.mean", 1),
    ):
        assert features[f"{name}.{index}"] == pytest.approx(float(reference[name][index]), rel=1e-3), name
    assert features["lowLevel.average_loudness"] == pytest.approx(pool["lowLevel.average_loudness"], rel=1e-4)
    assert features["rhythm.first_peak_bpm.mean"] == pytest.approx(float(pool["rhythm.first_peak_bpm"][0]))


def _streaming_onset_times(audio: np.ndarray) -> np.ndarray:
    """Onset times from Essentia's streaming OnsetRate, the algorithm the Extractor runs."""
    source, onset_rate, pool = ess.VectorInput(audio), ess.OnsetRate(), essentia.Pool()
    source.data >> onset_rate.signal
    onset_rate.onsetTimes >> (pool, "times")
    onset_rate.onsetRate >> (pool, "rate")
    essentia.run(source)
    return np.atleast_1d(pool["times"])


def _streaming_frames(audio: np.ndarray) -> list[np.ndarray]:
    """The 1024/512 frames of the streaming FrameCutter, configured as in OnsetRate."""
    source, cutter, pool = (
        ess.VectorInput(audio),
        ess.FrameCutter(frameSize=1024, hopSize=512, silentFrames="keep"),
        essentia.Pool(),
    )
    source.data >> cutter.signal
    cutter.frame >> (pool, "frames")
    essentia.run(source)
    return list(pool["frames"])


def _frames_from_zero(audio: np.ndarray) -> list[np.ndarray]:
    """The frames of a standard-mode FrameCutter starting at sample 0, as in OnsetRate."""
    cutter, frames = es.FrameCutter(frameSize=1024, hopSize=512, startFromZero=True), []
    while (frame := cutter(audio)).size:
        frames.append(frame)
    return frames


@pytest.mark.parametrize("n_samples", [2048, 2049, 2303, 2559, 2560, 2561, 3000, 3 * SR + 511])
def test_centred_framing_gives_the_streaming_frames_to_a_cutter_starting_at_zero(n_samples):
    audio = np.random.default_rng(n_samples).normal(size=n_samples).astype(np.float32)
    streaming = _streaming_frames(audio)
    from_zero = _frames_from_zero(centred_framing(audio, 1024))
    assert len(from_zero) == len(streaming)
    for ours, theirs in zip(from_zero, streaming):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("extra_samples", [0, 1, 256, 511, 512, 513, 1023])
def test_onset_rate_counts_the_streaming_algorithms_onsets_whatever_the_length(extractor, extra_samples):
    # The lengths cover every kind of remainder against the hop (the frames themselves are
    # compared in the test above); the rate is the streaming algorithm's count over the length.
    audio = _music_like(3.0)
    audio = np.concatenate([audio, audio[:extra_samples]])
    onsets = _streaming_onset_times(audio)
    assert len(onsets) >= 5
    assert _named(extractor, audio)["rhythm.onset_rate"] == pytest.approx(len(onsets) / audio.size * SR)


def test_bark_loudness_formulas():
    bands = np.zeros((2, 27))
    bands[0, 3] = 1.0  # all loudness in band number z = 4 (index 3)
    bands[1, :] = 1.0  # flat
    out = bark_loudness_descriptors(bands)
    np.testing.assert_allclose(out["lowLevel.total_loudness"], [1.0, 27.0])
    assert out["lowLevel.specific_sharpness"][0] == pytest.approx(0.11 * 4)
    z = np.arange(1, 28)
    g = np.where(z < 15, 1.0, 0.066 * np.exp(0.171 * z))
    assert out["lowLevel.specific_sharpness"][1] == pytest.approx(0.11 * np.sum(g * z) / 27)
    np.testing.assert_allclose(out["lowLevel.specific_spread"], [0.0, (26 / 27) ** 2])


# ---------------------------------------------------------------------------- temporal and level


def _burst_in_silence(burst_seconds: float) -> np.ndarray:
    audio = np.zeros(10 * SR, dtype=np.float32)
    start = 3 * SR
    audio[start : start + int(burst_seconds * SR)] = _sine(440.0, burst_seconds)
    return audio


def test_effective_duration_of_a_tone_burst(extractor):
    two = _named(extractor, _burst_in_silence(2.0))["temporal.effective_duration"]
    four = _named(extractor, _burst_in_silence(4.0))["temporal.effective_duration"]
    # The envelope's 1.5-s release extends the time above 40 % of the maximum past the burst
    # end by a constant; durations differ by the bursts' difference.
    assert 2.0 <= two <= 3.5
    assert four - two == pytest.approx(2.0, abs=0.05)


def test_level_descriptors_rise_with_gain(extractor):
    audio = _music_like(4.0)
    quiet = _named(extractor, (audio * 0.25).astype(np.float32))
    loud = _named(extractor, audio)
    assert loud["dynamic.loudness.mean"] > quiet["dynamic.loudness.mean"]
    assert loud["dynamic.rms.mean"] == pytest.approx(4.0 * quiet["dynamic.rms.mean"], rel=1e-3)
    assert loud["dynamic.leq.mean"] - quiet["dynamic.leq.mean"] == pytest.approx(20 * np.log10(4), abs=0.05)
    assert loud["lowLevel.spectral_energy.mean"] == pytest.approx(
        16.0 * quiet["lowLevel.spectral_energy.mean"], rel=1e-3
    )


def test_compression_reduces_dynamic_range(extractor):
    rng = np.random.default_rng(RNG_SEED)
    n = 10 * SR
    # Noise whose level jumps between -6 dB and -36 dB every 0.5 s: a wide dynamic range.
    level = np.where((np.arange(n) // (SR // 2)) % 2 == 0, 0.5, 0.5 * 10 ** (-30 / 20))
    raw = (rng.normal(0.0, 0.3, n) * level).astype(np.float32)
    board = Pedalboard([Compressor(threshold_db=-40.0, ratio=20.0, attack_ms=1.0, release_ms=20.0)])
    compressed = board(raw, SR).astype(np.float32)

    # As in the pipeline: both loudness-normalised and equal-loudness filtered first.
    raw_features = _named(extractor, preprocess(raw)[0])
    compressed_features = _named(extractor, preprocess(compressed)[0])
    assert (
        compressed_features["dynamic.dynamic_complexity.mean"]
        < raw_features["dynamic.dynamic_complexity.mean"]
    )
    assert compressed_features["dynamic.leq.stdev"] < raw_features["dynamic.leq.stdev"]
    assert compressed_features["dynamic.rms.stdev"] / compressed_features["dynamic.rms.mean"] < (
        raw_features["dynamic.rms.stdev"] / raw_features["dynamic.rms.mean"]
    )


def test_silent_segment_still_gives_1812_values(extractor):
    values = extractor.extract(np.zeros(3 * SR, dtype=np.float32))
    assert values.shape == (1812,)
    cleaned, _ = replace_non_finite(np.vstack([values, extractor.extract(_music_like(3.0))]))
    assert np.isfinite(cleaned).all()


# ---------------------------------------------------------------------------- pooling


def _pool_aggregator(values: np.ndarray) -> dict[str, np.ndarray]:
    pool = essentia.Pool()
    for row in values:
        pool.add("x", row.astype(np.float32) if values.ndim == 2 else float(row))
    aggregated = es.PoolAggregator(defaultStats=list(FRAME_STATISTICS))(pool)
    return {stat: np.atleast_1d(aggregated[f"x.{stat}"]) for stat in FRAME_STATISTICS}


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(1).normal(size=(50, 4)),
        np.random.default_rng(2).exponential(size=(7, 3)),
        np.random.default_rng(3).normal(size=31),
        np.array([[2.0, 1.0], [2.0, 5.0], [2.0, -3.0]]),  # a constant column
        np.array([1.0, 4.0]),  # too short for a second difference
        np.array([3.5]),  # one value
    ],
)
def test_pooling_is_essentias_pool_aggregator_frame_by_frame(values):
    # The bulk merge into the pool must give exactly what adding frame by frame gives.
    ours = pool_statistics({"x": values, "y": values[::-1]})
    reference = _pool_aggregator(values)
    assert ours["x"].shape == (len(FRAME_STATISTICS), 1 if values.ndim == 1 else values.shape[1])
    for row, stat in enumerate(FRAME_STATISTICS):
        np.testing.assert_array_equal(ours["x"][row], reference[stat].astype(np.float64), err_msg=stat)


def test_pooling_of_no_frames_is_nan():
    pooled = pool_statistics({"empty": np.empty((0, 3)), "full": np.ones(4)})
    assert pooled["empty"].shape == (len(FRAME_STATISTICS), 3) and np.isnan(pooled["empty"]).all()
    assert pooled["full"][FRAME_STATISTICS.index("mean")] == 1.0
