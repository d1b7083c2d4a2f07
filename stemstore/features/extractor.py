"""The 1812-feature catalog, computed with Essentia (docs/method.md, section 3).

``FeatureExtractor.extract(audio)`` turns one pre-processed segment (mono, float32, 44.1 kHz,
see :mod:`stemstore.audio`) into a float64 vector of 1812 values in catalog order
(:func:`stemstore.store.catalog.feature_names`). The configuration is the study's own extraction
(Essentia's ``Extractor`` plus a few descriptors computed beside it);
:data:`stemstore.features.EXTRACTOR_VERSION` names it, and values computed by an older version
are recomputed by ``stemstore extract``.

How the catalog's descriptors are computed
------------------------------------------
* Frame descriptors on 2048/1024 frames reproduce Essentia's ``Extractor`` (its
  LowLevelSpectralExtractor and LowLevelSpectralEqloudExtractor): FrameCutter frames centred on
  the start (``startFromZero=False``), silent frames replaced by -100 dB noise as the
  streaming FrameCutter's ``silentFrames='noise'`` does, Blackman-Harris 62 window, one
  magnitude spectrum per frame shared by every spectral algorithm, with the Extractor's
  parameters. The input is already equal-loudness filtered, so both extractor halves see the
  same spectrum. The MFCC keeps coefficients 1..12.
* ``spectral_entropy`` and the ``melbands_*`` shape descriptors come from a separate pass:
  plain 2048/1024 frames (no noise), Hann window, ``Entropy`` of the spectrum, ``MelBands()``
  with its defaults (24 bands, 0-22050 Hz), then ``Crest``, ``FlatnessDB`` and
  ``DistributionShape`` of ``CentralMoments()`` (default range).
* ``specific_sharpness``, ``specific_spread`` and ``total_loudness`` are the catalog's own
  formulas over the 27 Bark bands (numpy, see :func:`bark_loudness_descriptors`).
* ``tonal.hpcp``: the TonalExtractor's key HPCP (36 bins) on 4096/2048 frames, referenced to
  the tuning frequency that Essentia's ``TuningFrequency`` estimates over the segment's frames
  (as ``Extractor(tuning=True)`` does). ``hpcp_crest``/``hpcp_entropy`` are Crest/Entropy of
  every HPCP frame; an all-zero frame gives 0.
* ``dynamic.*``: Larm, Leq, Loudness, LoudnessVickers and RMS on plain 4096/2048 frames centred
  on sample 0; DynamicComplexity on plain 2-s/1-s frames starting at sample 0.
  ``lowLevel.average_loudness`` is the Extractor's level average over Loudness of 2-s/1-s
  frames.
* ``rhythm.*``: RhythmExtractor2013 (multifeature), BpmHistogramDescriptors on its BPM
  intervals and BeatsLoudness at its beats, as the Extractor's RhythmDescriptors; single
  BPM-histogram values are pooled like any other (a one-value pool). ``onset_rate`` counts the
  onsets of Essentia's OnsetRate on frames centred on sample 0, as the streaming algorithm
  frames them.
* ``temporal.*``: envelope descriptors of Essentia's Envelope (default 10 ms attack / 1500 ms
  release) of the whole segment; ``sfx.pitch_*`` as the Extractor's post-processing of the
  pitch curve.

Pooling is Essentia's ``PoolAggregator`` (:func:`pool_statistics`).

Determinism: the -100 dB noise on silent frames is reseeded for every framing pass, so a
segment's values never depend on what was extracted before it, in which worker, or how many
workers there were. Essentia's own extractor seeds that noise at random, so on segments with
silent frames its values for the 2048/1024 spectral descriptors vary from run to run; ours are
one fixed draw of the same noise.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

import essentia

essentia.log.infoActive = False  # set before essentia.standard, which logs on import
import essentia.standard as es  # noqa: E402

from stemstore.store.catalog import FRAME_STATISTICS, feature_names, load_catalog  # noqa: E402


SAMPLE_RATE = 44100
#: Low-level spectral frames (Essentia Extractor defaults).
LOWLEVEL_FRAME, LOWLEVEL_HOP = 2048, 1024
#: Tonal (HPCP) frames and dynamics frames.
TONAL_FRAME, TONAL_HOP = 4096, 2048
DYNAMICS_FRAME, DYNAMICS_HOP = 4096, 2048
#: The onset detection frames of Essentia's OnsetRate.
ONSET_FRAME = 1024
#: 2-s windows, 1-s hop: DynamicComplexity and the average-loudness level curve.
LONG_FRAME, LONG_HOP = 88200, 44100

N_BARK_BANDS = 27
N_MEL_BANDS = 40  # the MFCC's own mel filterbank (Essentia's MFCC default)
HPCP_SIZE = 36
#: HPCP reference frequency before a segment's tuning is estimated (Essentia's default).
HPCP_REFERENCE_HZ = 440.0
#: BeatsLoudness band edges of the Extractor (the streaming algorithm's defaults: 6 bands;
#: the standard-mode defaults differ).
BEATS_LOUDNESS_BANDS_HZ = [0.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 22000.0]
#: Exponent turning Bark-band energy into specific loudness (catalog formulas).
SPECIFIC_LOUDNESS_EXPONENT = 0.23

_N_STATS = len(FRAME_STATISTICS)
_STAT_ROW = {name: row for row, name in enumerate(FRAME_STATISTICS)}


# --------------------------------------------------------------------------------------------
# Pooling and clean-up
# --------------------------------------------------------------------------------------------


def pool_statistics(frames: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Essentia's ``PoolAggregator`` statistics of per-frame descriptor values.

    ``frames`` maps a descriptor name to its frame values: a 1-D array (one value per frame)
    or a 2-D (frames x dims) array. Returns, per descriptor, a ``(12, dims)`` float64 array
    whose rows follow :data:`stemstore.store.catalog.FRAME_STATISTICS` (min, max, median, mean, var,
    stdev, skew, kurt, dmean, dvar, dmean2, dvar2), exactly as ``PoolAggregator`` computes
    them (in single precision, as Essentia's pool stores values). A descriptor with no
    frames gets NaN for every statistic.
    """
    aggregate = _direct(_aggregator())  # takes and returns C++ pools
    out: dict[str, np.ndarray] = {}
    for name, values in frames.items():
        x = np.asarray(values, dtype=np.float32)
        stats = np.full((_N_STATS, 1 if x.ndim == 1 else x.shape[1]), np.nan)
        out[name] = stats
        if x.shape[0] == 0:
            continue
        # One small pool per descriptor: PoolAggregator's cost grows with the whole pool's
        # size for every descriptor it aggregates (7x slower on one pool of everything).
        pool = essentia.Pool().cppPool  # the C++ pool: merges a whole column at once
        if x.ndim == 1:
            pool.__merge__(name, "VECTOR_REAL", np.ascontiguousarray(x), "append")
        else:
            pool.__merge__(name, "VECTOR_VECTOR_REAL", list(np.ascontiguousarray(x)), "append")
        aggregated = aggregate(pool)
        present = set(aggregated.descriptorNames())
        # A statistic of a 1-D descriptor is one value, of a 2-D one a vector: the key type is
        # known without asking the pool for each key.
        key_type = "REAL" if x.ndim == 1 else "VECTOR_REAL"
        for row, statistic in enumerate(FRAME_STATISTICS):
            key = f"{name}.{statistic}"
            if key in present:
                stats[row] = aggregated.__value__(key, key_type)
    return out


_AGGREGATOR = None


def _aggregator():
    """One PoolAggregator with the catalog's statistics (it keeps no state between pools)."""
    global _AGGREGATOR
    if _AGGREGATOR is None:
        _AGGREGATOR = es.PoolAggregator(defaultStats=list(FRAME_STATISTICS))
    return _AGGREGATOR


# --------------------------------------------------------------------------------------------
# The catalog's own formulas
# --------------------------------------------------------------------------------------------


def bark_loudness_descriptors(barkbands: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame ``total_loudness``, ``specific_sharpness`` and ``specific_spread``.

    From a (frames x 27) Bark-band energy array, with specific loudness
    ``N_z = barkband_z ** 0.23`` and total loudness ``N = sum_z N_z``:

    * sharpness ``0.11 * sum_z(N_z * g_z * z) / N`` with ``g_z = 1`` for ``z < 15`` and
      ``0.066 * exp(0.171 z)`` above, where ``z = 1..27`` is the band number;
    * spread ``((N - max_z N_z) / N) ** 2``.

    Frames with zero total loudness give NaN sharpness/spread (replaced later).
    """
    bands = np.asarray(barkbands, dtype=np.float64)
    specific = np.power(np.maximum(bands, 0.0), SPECIFIC_LOUDNESS_EXPONENT)
    total = specific.sum(axis=1)
    z = np.arange(1, bands.shape[1] + 1, dtype=np.float64)
    weight = np.where(z < 15, 1.0, 0.066 * np.exp(0.171 * z))
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpness = 0.11 * (specific * (weight * z)).sum(axis=1) / total
        spread = ((total - specific.max(axis=1)) / total) ** 2
    return {
        "lowLevel.total_loudness": total,
        "lowLevel.specific_sharpness": sharpness,
        "lowLevel.specific_spread": spread,
    }


def average_loudness(level: np.ndarray) -> float:
    """The Essentia Extractor's ``average_loudness`` from a curve of frame loudness values.

    Normalise to the maximum (at least 1e-4), floor at 1e-4 (-80 dB), average, convert to dB
    and squeeze into (0, 1) with ``0.5 + 0.5 tanh(-1 + 2 (x + 5) / 3)``: close to 1 for a signal
    with little dynamic range. (Extractor::levelAverage, which is post-processing code, not an
    Essentia algorithm.)
    """
    values = np.asarray(level, dtype=np.float64)
    if values.size == 0:
        return float("nan")
    epsilon, floor = 10e-5, 0.0001
    normalised = np.maximum(values / max(values.max(), epsilon), floor)
    level_db = 10.0 * math.log10(normalised.mean())
    x1, x2 = -5.0, -2.0
    return float(0.5 + 0.5 * math.tanh(-1.0 + 2.0 * (level_db - x1) / (x2 - x1)))


# --------------------------------------------------------------------------------------------
# Catalog layout: where each pooled statistic lands in the output vector
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PooledLayout:
    """Catalog positions of one pooled descriptor: out[positions] = stats[stat_rows, columns]."""

    positions: np.ndarray
    stat_rows: np.ndarray
    columns: np.ndarray


def _catalog_layout() -> tuple[dict[str, _PooledLayout], dict[str, int]]:
    catalog = load_catalog()
    pooled: dict[str, _PooledLayout] = {}
    scalars: dict[str, int] = {}
    for descriptor, rows in catalog.groupby("descriptor", sort=False):
        if (rows["scope"] == "global").all():
            if len(rows) != 1:
                raise ValueError(f"global descriptor {descriptor} has {len(rows)} catalog rows")
            scalars[descriptor] = int(rows["position"].iloc[0])
            continue
        pooled[descriptor] = _PooledLayout(
            positions=rows["position"].to_numpy(dtype=np.int64),
            stat_rows=np.array([_STAT_ROW[s] for s in rows["statistic"]], dtype=np.int64),
            columns=rows["index"].fillna(0).to_numpy(dtype=np.int64),
        )
    return pooled, scalars


# --------------------------------------------------------------------------------------------
# The extractor
# --------------------------------------------------------------------------------------------


def centred_framing(audio: np.ndarray, frame_size: int) -> np.ndarray:
    """``audio`` with half a frame of zeros on both sides.

    A FrameCutter that starts its frames at sample 0 (``startFromZero=True``, as standard-mode
    composites such as OnsetRate do) cuts from this signal exactly the frames that the
    streaming FrameCutter cuts from ``audio`` itself (``startFromZero=False``: the first frame
    centred on sample 0), the last one included, for a hop of half the frame.
    """
    half_frame = np.zeros(frame_size // 2, dtype=np.float32)
    return np.concatenate([half_frame, np.asarray(audio, dtype=np.float32), half_frame])


def _direct(algorithm):
    """The C++ compute of an essentia.standard algorithm, without the Python wrapper.

    ``algorithm(x)`` re-inspects and converts every argument on each call, which costs more
    than many spectral algorithms themselves at 430 frames x 40 calls per segment. Inside the
    frame loops every argument is already a C-contiguous float32 array or a float, exactly
    what Essentia takes, so the conversion is skipped. Same algorithm, same results.
    """
    return algorithm.__compute__


def _each(algorithm, inputs: list) -> list:
    """``algorithm`` on every input in turn (see :func:`_direct`).

    The frame passes run one algorithm over all of a segment's frames before the next
    algorithm, rather than every algorithm on one frame: each algorithm's tables and buffers
    stay in the CPU caches (about 10% faster). Every algorithm still sees its frames in order,
    so stateful ones (Flux, TuningFrequency, OnsetDetection, ...) give the same values.
    """
    compute = _direct(algorithm)
    return [compute(x) for x in inputs]


def _columns(names: tuple[str, ...], rows: list[tuple]) -> dict[str, tuple]:
    """Split one multi-output algorithm's per-frame results into one sequence per output."""
    return dict(zip(names, zip(*rows), strict=True))


class FeatureExtractor:
    """Computes the catalog for segments; build once, call :meth:`extract` per segment.

    The Essentia algorithm instances are created here and reused for every segment; all of
    them are reset at the start of each segment.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE):
        if sample_rate != SAMPLE_RATE:
            raise ValueError("the catalog is defined at 44.1 kHz; resample first")
        self.sample_rate = float(sample_rate)
        self.names = feature_names()
        self._pooled_layout, self._scalar_layout = _catalog_layout()
        self._build_algorithms()
        self._cutters: dict[tuple[int, int, bool], object] = {}  # FrameCutters by framing
        self._algorithms = [
            value
            for value in vars(self).values()
            if hasattr(value, "reset") and hasattr(value, "__compute__")
        ] + list(self.energy_bands)

    # -- construction --------------------------------------------------------------------------

    def _build_algorithms(self) -> None:
        sr = self.sample_rate
        nyquist = 0.5 * sr
        # Silent frames get -100 dB noise, as the streaming FrameCutter (silentFrames='noise')
        # of Essentia's extractors does, so that log/ratio descriptors stay finite.
        self.noise = es.NoiseAdder(level=-100, fixSeed=True)

        # Low-level frames (Extractor: LowLevelSpectralExtractor + LowLevelSpectralEqloudExtractor).
        self.window = es.Windowing(type="blackmanharris62", size=LOWLEVEL_FRAME)
        self.spectrum = es.Spectrum(size=LOWLEVEL_FRAME)
        # SilenceRate thresholds: -20, -30, -60 dB, as db2lin(dB / 2) in the Extractor.
        self.silence_rate = es.SilenceRate(
            thresholds=[10.0 ** (db / 2.0 / 10.0) for db in (-20.0, -30.0, -60.0)]
        )
        self.zcr = es.ZeroCrossingRate()
        self.mfcc = es.MFCC(numberBands=N_MEL_BANDS)
        self.bark_bands = es.BarkBands(numberBands=N_BARK_BANDS, sampleRate=sr)
        self.bark_moments = es.CentralMoments(range=N_BARK_BANDS - 1)
        self.spectrum_moments = es.CentralMoments(range=nyquist)
        self.distribution_shape = es.DistributionShape()
        self.crest = es.Crest()
        self.flatness_db = es.FlatnessDB()
        self.energy = es.Energy()
        self.energy_bands = [
            es.EnergyBand(startCutoffFrequency=lo, stopCutoffFrequency=hi, sampleRate=sr)
            for lo, hi in ((20, 150), (150, 800), (800, 4000), (4000, 20000))
        ]
        self.hfc = es.HFC(sampleRate=sr)
        self.rms = es.RMS()
        self.flux = es.Flux()
        self.rolloff = es.RollOff(sampleRate=sr)
        self.strong_peak = es.StrongPeak()
        self.decrease = es.Decrease(range=nyquist)
        self.centroid = es.Centroid(range=nyquist)
        self.spectral_complexity = es.SpectralComplexity(magnitudeThreshold=0.005, sampleRate=sr)
        self.pitch_yin = es.PitchYinFFT(frameSize=LOWLEVEL_FRAME, sampleRate=sr)
        self.pitch_salience = es.PitchSalience(sampleRate=sr)
        self.entropy = es.Entropy()
        self.contrast = es.SpectralContrast(
            frameSize=LOWLEVEL_FRAME,
            sampleRate=sr,
            numberBands=6,
            lowFrequencyBound=20,
            highFrequencyBound=11000,
            neighbourRatio=0.4,
            staticDistribution=0.15,
        )
        # Two peak pickers, as in the two Extractor halves: harmonic analysis (sfx) starts
        # above the first bin; dissonance takes every peak.
        self.harmonic_input_peaks = es.SpectralPeaks(
            orderBy="frequency", minFrequency=sr / LOWLEVEL_FRAME, sampleRate=sr
        )
        self.dissonance_peaks = es.SpectralPeaks(orderBy="frequency", sampleRate=sr)
        self.dissonance = es.Dissonance()
        self.harmonic_peaks = es.HarmonicPeaks()
        self.inharmonicity = es.Inharmonicity()
        self.tristimulus = es.Tristimulus()
        self.odd_to_even = es.OddToEvenHarmonicEnergyRatio()

        # The Hann-window pass (plain frames, no noise): spectral entropy and mel-band shape,
        # MelBands and CentralMoments with Essentia's defaults (24 bands, 0-22050 Hz).
        self.hann_window = es.Windowing(type="hann", size=LOWLEVEL_FRAME)
        self.hann_spectrum = es.Spectrum(size=LOWLEVEL_FRAME)
        self.mel_bands = es.MelBands()
        self.mel_moments = es.CentralMoments()

        # Tonal frames (Extractor: TuningFrequencyExtractor, then TonalExtractor's key HPCP
        # referenced to the estimated tuning). Own window and FFT: sharing the 2048-sample ones
        # would re-plan them twice per segment. The two peak pickers differ only in order.
        self.tonal_window = es.Windowing(type="blackmanharris62", size=TONAL_FRAME)
        self.tonal_spectrum = es.Spectrum(size=TONAL_FRAME)
        tonal_peak_range = dict(
            magnitudeThreshold=1e-05, minFrequency=40, maxFrequency=5000, maxPeaks=10000, sampleRate=sr
        )
        self.tuning_peaks = es.SpectralPeaks(orderBy="frequency", **tonal_peak_range)
        self.tuning_frequency = es.TuningFrequency()
        self.tonal_peaks = es.SpectralPeaks(orderBy="magnitude", **tonal_peak_range)
        self.hpcp = es.HPCP(**self._hpcp_params(HPCP_REFERENCE_HZ))

        # Dynamics frames.
        self.larm = es.Larm(sampleRate=sr)
        self.leq = es.Leq()
        self.loudness = es.Loudness()
        self.loudness_vickers = es.LoudnessVickers(sampleRate=sr)
        self.dynamic_complexity = es.DynamicComplexity(sampleRate=sr)

        # Whole-segment algorithms.
        self.rhythm = es.RhythmExtractor2013(method="multifeature")
        self.bpm_histogram = es.BpmHistogramDescriptors()
        # Essentia's OnsetRate (hfc + complex detection on 1024/512 Hann frames); see _onset_rate.
        self.onset_rate = es.OnsetRate()
        self.envelope = es.Envelope(sampleRate=sr)
        self.effective_duration = es.EffectiveDuration(sampleRate=sr)
        self.log_attack_time = es.LogAttackTime(sampleRate=sr)
        self.strong_decay = es.StrongDecay(sampleRate=sr)
        self.flatness_sfx = es.FlatnessSFX()
        self.max_to_total = es.MaxToTotal()
        self.min_to_total = es.MinToTotal()
        self.tc_to_total = es.TCToTotal()
        self.derivative_sfx = es.DerivativeSFX()
        self.after_max_to_before_max = es.AfterMaxToBeforeMaxEnergyRatio()

    def _hpcp_params(self, reference_hz: float) -> dict:
        """The TonalExtractor's key-HPCP parameters, referenced to ``reference_hz``."""
        return dict(
            size=HPCP_SIZE,
            referenceFrequency=float(reference_hz),
            minFrequency=40.0,
            maxFrequency=5000.0,
            nonLinear=False,
            bandPreset=False,
            windowSize=1.33333333333,
            weightType="squaredCosine",
            sampleRate=self.sample_rate,
        )

    # -- framing -------------------------------------------------------------------------------

    def _cut(
        self, audio: np.ndarray, frame_size: int, hop_size: int, start_from_zero: bool
    ) -> list[np.ndarray]:
        """Every Essentia FrameCutter frame of ``audio`` (what ``FrameGenerator`` yields).

        One FrameCutter per framing, built once and reset here, called through its C++ entry
        point: ``FrameGenerator`` builds a new cutter and converts the whole segment again
        for every frame.
        """
        cutter = self._cutters.get((frame_size, hop_size, start_from_zero))
        if cutter is None:
            cutter = self._cutters[(frame_size, hop_size, start_from_zero)] = es.FrameCutter(
                frameSize=frame_size, hopSize=hop_size, startFromZero=start_from_zero
            )
        cutter.reset()
        cut = _direct(cutter)
        frames = []
        while (frame := cut(audio)).size:
            frames.append(frame)
        return frames

    def _with_silent_noise(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """``frames`` with silent ones replaced by a copy plus -100 dB noise.

        The noise generator is reseeded for every pass, so a frame's noise depends only on the
        segment, never on what was extracted before it. (Essentia's own streaming FrameCutter
        seeds it at random, so the study's values on silent frames are not reproducible.)
        """
        self.noise.configure(level=-100, fixSeed=True)  # reseeds; reset() would not
        is_silent, add_noise = essentia.isSilent, _direct(self.noise)
        # Essentia's isSilent decides (instant power below -100 dB); the cheap numpy check in
        # front only spares the call for frames clearly louder than that, i.e. nearly all.
        clearly_loud = frames[0].size * 1e-9 if frames else 0.0
        return [
            add_noise(frame) if np.dot(frame, frame) < clearly_loud and is_silent(frame) else frame
            for frame in frames
        ]

    # -- per-frame descriptor groups -------------------------------------------------------------

    def _lowlevel(self, frames: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Every 2048/1024 frame descriptor, as (frames x dims) arrays keyed by catalog name.

        ``frames``: the 2048/1024 frames, silent ones with noise."""
        spectra = _each(self.spectrum, _each(self.window, frames))  # read by every spectral algorithm
        powers = [spec * spec for spec in spectra]
        barkbands = _each(self.bark_bands, spectra)
        pitch, pitch_confidence = zip(*_each(self.pitch_yin, spectra))
        shape = self.distribution_shape
        out = _columns(
            ("lowLevel.silence_rate_20dB", "lowLevel.silence_rate_30dB", "lowLevel.silence_rate_60dB"),
            _each(self.silence_rate, frames),
        )
        out["lowLevel.zerocrossingrate"] = _each(self.zcr, frames)
        # MFCC: all 13 coefficients; the catalog's indices 1..12 pick coefficients 1..12.
        out["lowLevel.mfcc"] = [coefficients for _bands, coefficients in _each(self.mfcc, spectra)]
        out["lowLevel.spectral_energy"] = _each(self.energy, spectra)
        for name, band in zip(
            (
                "lowLevel.spectral_energyband_low",
                "lowLevel.spectral_energyband_middle_low",
                "lowLevel.spectral_energyband_middle_high",
                "lowLevel.spectral_energyband_high",
            ),
            self.energy_bands,
        ):
            out[name] = _each(band, spectra)
        out["lowLevel.hfc"] = _each(self.hfc, spectra)
        out["lowLevel.spectral_rms"] = _each(self.rms, spectra)
        out["lowLevel.spectral_flux"] = _each(self.flux, spectra)
        out["lowLevel.spectral_rolloff"] = _each(self.rolloff, spectra)
        out["lowLevel.spectral_strongpeak"] = _each(self.strong_peak, spectra)
        out["lowLevel.spectral_decrease"] = _each(self.decrease, powers)
        out["lowLevel.spectral_complexity"] = _each(self.spectral_complexity, spectra)
        out["lowLevel.pitch"] = pitch
        out["lowLevel.pitch_instantaneous_confidence"] = pitch_confidence
        out["lowLevel.pitch_salience"] = _each(self.pitch_salience, spectra)
        out["lowLevel.barkbands"] = barkbands
        out["lowLevel.spectral_crest"] = _each(self.crest, barkbands)  # the Extractor's: of Bark bands
        out["lowLevel.spectral_flatness_db"] = _each(self.flatness_db, barkbands)
        out.update(
            _columns(
                ("lowLevel.barkbands_spread", "lowLevel.barkbands_skewness", "lowLevel.barkbands_kurtosis"),
                _each(shape, _each(self.bark_moments, barkbands)),
            )
        )
        out["lowLevel.spectral_centroid"] = _each(self.centroid, powers)
        out.update(
            _columns(
                ("lowLevel.spectral_spread", "lowLevel.spectral_skewness", "lowLevel.spectral_kurtosis"),
                _each(shape, _each(self.spectrum_moments, spectra)),
            )
        )
        dissonance = _direct(self.dissonance)
        out["lowLevel.dissonance"] = [dissonance(*peaks) for peaks in _each(self.dissonance_peaks, spectra)]
        out.update(_columns(("lowLevel.sccoeffs", "lowLevel.scvalleys"), _each(self.contrast, spectra)))
        out.update(self._harmonics(_each(self.harmonic_input_peaks, spectra), pitch))
        out = {name: np.array(values, dtype=np.float64) for name, values in out.items()}
        out.update(bark_loudness_descriptors(out["lowLevel.barkbands"]))
        return out

    def _harmonics(self, peaks: list, pitch: tuple) -> dict[str, list]:
        """Inharmonicity, odd-to-even energy ratio and tristimulus of each frame's harmonic
        peaks; NaN on frames whose harmonic peaks Essentia rejects."""
        harmonic_peaks, inharmonicity = _direct(self.harmonic_peaks), _direct(self.inharmonicity)
        odd_to_even, tristimulus = _direct(self.odd_to_even), _direct(self.tristimulus)
        out: dict[str, list] = {
            "sfx.inharmonicity": [],
            "sfx.oddtoevenharmonicenergyratio": [],
            "sfx.tristimulus": [],
        }
        for (freqs, mags), frame_pitch in zip(peaks, pitch):
            values = [math.nan, math.nan, np.full(3, np.nan)]
            try:
                h_freqs, h_mags = harmonic_peaks(freqs, mags, frame_pitch)
                values[0] = inharmonicity(h_freqs, h_mags)
                values[1] = odd_to_even(h_freqs, h_mags)
                values[2] = tristimulus(h_freqs, h_mags)
            except RuntimeError:
                pass  # left NaN from here on: Essentia rejected this frame's harmonic peaks
            for column, value in zip(out.values(), values):
                column.append(value)
        return out

    def _hann(self, frames: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Spectral entropy and mel-band shape of Hann-window 2048/1024 frames (plain frames)."""
        spectra = _each(self.hann_spectrum, _each(self.hann_window, frames))
        bands = _each(self.mel_bands, spectra)
        out = {
            "lowLevel.spectral_entropy": _each(self.entropy, spectra),
            "lowLevel.melbands_crest": _each(self.crest, bands),
            "lowLevel.melbands_flatness_db": _each(self.flatness_db, bands),
        }
        out.update(
            _columns(
                ("lowLevel.melbands_spread", "lowLevel.melbands_skewness", "lowLevel.melbands_kurtosis"),
                _each(self.distribution_shape, _each(self.mel_moments, bands)),
            )
        )
        return {name: np.array(values, dtype=np.float64) for name, values in out.items()}

    def _tonal(self, frames: list[np.ndarray]) -> dict[str, np.ndarray]:
        """HPCP (36 bins) per 4096/2048 frame (silent ones with noise), referenced to the
        segment's estimated tuning frequency, with its crest and entropy (both 0 on an all-zero
        profile, as Essentia)."""
        spectra = _each(self.tonal_spectrum, _each(self.tonal_window, frames))
        tuning = _direct(self.tuning_frequency)
        estimates = [tuning(*peaks) for peaks in _each(self.tuning_peaks, spectra)]
        tuning_hz = estimates[-1][0] if estimates else HPCP_REFERENCE_HZ  # a running estimate
        self.hpcp.configure(**self._hpcp_params(tuning_hz))
        hpcp = _direct(self.hpcp)
        hpcps = [hpcp(*peaks) for peaks in _each(self.tonal_peaks, spectra)]
        return {
            "tonal.hpcp": np.array(hpcps, dtype=np.float64).reshape(-1, HPCP_SIZE),
            "tonal.hpcp_crest": np.array(_each(self.crest, hpcps), dtype=np.float64),
            "tonal.hpcp_entropy": np.array(_each(self.entropy, hpcps), dtype=np.float64),
        }

    def _dynamics(
        self, frames: list[np.ndarray], long_frames: list[np.ndarray]
    ) -> tuple[dict[str, np.ndarray], float]:
        """Level descriptors per 4096/2048 frame and per 2-s/1-s window; the average loudness.

        ``frames``, ``long_frames``: the plain 4096/2048 and 2-s/1-s frames."""
        out = {
            "dynamic.larm": _each(self.larm, frames),
            "dynamic.leq": _each(self.leq, frames),
            "dynamic.loudness": _each(self.loudness, frames),
            "dynamic.loudness_vickers": _each(self.loudness_vickers, frames),
            "dynamic.rms": _each(self.rms, frames),
        }
        out.update(
            _columns(
                ("dynamic.dynamic_complexity", "dynamic.dynamic_complexity_loudness"),
                _each(self.dynamic_complexity, long_frames),
            )
        )
        # The Extractor's level curve (LevelExtractor) frames with its noise on silent frames.
        level = _each(self.loudness, self._with_silent_noise(long_frames))
        pooled = {name: np.array(values, dtype=np.float64) for name, values in out.items()}
        return pooled, average_loudness(np.array(level))

    def _rhythm(self, audio: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        """Beat, BPM-histogram and onset descriptors of the whole segment, as the Extractor's
        RhythmDescriptors (RhythmExtractor2013, BpmHistogramDescriptors), BeatsLoudness and
        OnsetRate."""
        _bpm, ticks, _confidence, _estimates, intervals = self.rhythm(audio)
        histogram = self.bpm_histogram(intervals)
        pooled = {
            name: np.array([value], dtype=np.float64)
            for name, value in zip(
                (
                    "rhythm.first_peak_bpm",
                    "rhythm.first_peak_weight",
                    "rhythm.first_peak_spread",
                    "rhythm.second_peak_bpm",
                    "rhythm.second_peak_weight",
                    "rhythm.second_peak_spread",
                ),
                histogram[:6],
            )
        }
        if len(ticks) > 0:
            # BeatsLoudness takes the beat positions as a parameter: reconfigure per segment.
            beats = es.BeatsLoudness(
                beats=ticks, sampleRate=self.sample_rate, frequencyBands=BEATS_LOUDNESS_BANDS_HZ
            )
            beat_loudness, band_ratio = beats(audio)
        else:
            beat_loudness, band_ratio = np.empty(0), np.empty((0, 6))
        pooled["rhythm.beats_loudness"] = np.asarray(beat_loudness, dtype=np.float64)
        pooled["rhythm.beats_loudness_band_ratio"] = np.asarray(band_ratio, dtype=np.float64).reshape(-1, 6)
        return pooled, self._onset_rate(audio)

    def _onset_rate(self, audio: np.ndarray) -> float:
        """Onsets per second as the Extractor counts them.

        The Extractor runs the streaming OnsetRate, whose 1024/512 frames are centred on
        sample 0; the standard-mode algorithm (the same chain: Hann window, FFT, hfc and complex
        OnsetDetection, Onsets) starts them at sample 0. On :func:`centred_framing` of the
        segment it cuts exactly the streaming frames, in one C++ call instead of five Python
        calls per frame. The rate is the onset count over the segment's own length, as the
        Extractor computes it.
        """
        onset_times, _rate = self.onset_rate(centred_framing(audio, ONSET_FRAME))
        return len(onset_times) / audio.size * self.sample_rate

    def _temporal(self, audio: np.ndarray) -> dict[str, float]:
        """Envelope (sfx) descriptors of the whole segment."""
        envelope = self.envelope(audio)
        # FlatnessSFX reads only the envelope's order statistics and sorts a copy of it first;
        # handed the same values already sorted by numpy, it gives the same value in half the time.
        sorted_envelope = np.sort(envelope)
        der_av_after_max, max_der_before_max = self.derivative_sfx(envelope)
        return {
            "temporal.derAvAfterMax": der_av_after_max,
            "temporal.maxDerBeforeMax": max_der_before_max,
            "temporal.effective_duration": self.effective_duration(envelope),
            "temporal.flatness_sfx": self.flatness_sfx(sorted_envelope),
            "temporal.log_attack_time": self.log_attack_time(envelope)[0],
            "temporal.max_to_total": self.max_to_total(envelope),
            "temporal.min_to_total": self.min_to_total(envelope),
            "temporal.strong_decay": self.strong_decay(audio),
            "temporal.tct_to_total": self.tc_to_total(envelope),
        }

    def _pitch_curve(self, pitch: np.ndarray) -> dict[str, float]:
        """The Extractor's sfx descriptors of the frame pitch curve."""
        curve = np.ascontiguousarray(pitch, dtype=np.float32)
        out = dict.fromkeys(
            (
                "sfx.pitch_max_to_total",
                "sfx.pitch_min_to_total",
                "sfx.pitch_centroid",
                "sfx.pitch_after_max_to_before_max_energy_ratio",
            ),
            float("nan"),
        )
        if curve.size < 2:
            return out
        for name, compute in (
            ("sfx.pitch_max_to_total", lambda: self.max_to_total(curve)),
            ("sfx.pitch_min_to_total", lambda: self.min_to_total(curve)),
            ("sfx.pitch_centroid", lambda: es.Centroid(range=curve.size - 1)(curve)),
            ("sfx.pitch_after_max_to_before_max_energy_ratio", lambda: self.after_max_to_before_max(curve)),
        ):
            try:
                out[name] = float(compute())
            except RuntimeError:
                pass  # e.g. an all-zero pitch curve; left NaN
        return out

    # -- the public call ---------------------------------------------------------------------------

    def extract(self, audio: np.ndarray) -> np.ndarray:
        """All 1812 catalog features of one segment, float64, in catalog order.

        ``audio`` is mono float32 at 44.1 kHz, already pre-processed
        (:func:`stemstore.audio.preprocess`). Values may be NaN or infinite where Essentia
        gives them; :func:`stemstore.analysis.matrix.replace_non_finite` cleans a set of segments.
        """
        signal = np.ascontiguousarray(audio, dtype=np.float32)
        if signal.ndim != 1:
            raise ValueError(f"expected a mono 1-D signal, got shape {signal.shape}")
        if signal.size < LOWLEVEL_FRAME:
            raise ValueError(f"segment of {signal.size} samples is too short to analyse")
        # Several algorithms keep state between calls (Flux, LoudnessVickers, OnsetRate, the
        # noise generator, ...): every segment starts from freshly reset instances, so a
        # segment's features never depend on the segment analysed before it.
        for algorithm in self._algorithms:
            algorithm.reset()

        # Each framing is cut once and shared by the passes that read it: 2048/1024 by the
        # low-level and Hann passes, 4096/2048 by tonal and dynamics, 2-s/1-s by dynamic
        # complexity and the level curve. No pass modifies a frame in place.
        frames = functools.cache(functools.partial(self._cut, signal))
        pooled: dict[str, np.ndarray] = {}
        scalars: dict[str, float] = {}
        lowlevel_frames = frames(LOWLEVEL_FRAME, LOWLEVEL_HOP, False)
        pooled.update(self._lowlevel(self._with_silent_noise(lowlevel_frames)))
        pooled.update(self._hann(lowlevel_frames))
        pooled.update(self._tonal(self._with_silent_noise(frames(TONAL_FRAME, TONAL_HOP, False))))
        dynamics, scalars["lowLevel.average_loudness"] = self._dynamics(
            frames(DYNAMICS_FRAME, DYNAMICS_HOP, False), frames(LONG_FRAME, LONG_HOP, True)
        )
        pooled.update(dynamics)
        rhythm, scalars["rhythm.onset_rate"] = self._rhythm(signal)
        pooled.update(rhythm)
        scalars.update(self._temporal(signal))
        scalars.update(self._pitch_curve(pooled["lowLevel.pitch"]))

        values = np.full(len(self.names), np.nan)
        statistics = pool_statistics({name: pooled[name] for name in self._pooled_layout})
        for descriptor, layout in self._pooled_layout.items():
            values[layout.positions] = statistics[descriptor][layout.stat_rows, layout.columns]
        for descriptor, position in self._scalar_layout.items():
            values[position] = scalars[descriptor]
        return values

    def extract_named(self, audio: np.ndarray) -> dict[str, float]:
        """:meth:`extract` as a ``{feature name: value}`` dict (convenient in notebooks/tests)."""
        return dict(zip(self.names, self.extract(audio).tolist()))


_DEFAULT_EXTRACTOR: FeatureExtractor | None = None


def extract_features(audio: np.ndarray) -> np.ndarray:
    """:meth:`FeatureExtractor.extract` with a module-wide extractor built on first use."""
    global _DEFAULT_EXTRACTOR
    if _DEFAULT_EXTRACTOR is None:
        _DEFAULT_EXTRACTOR = FeatureExtractor()
    return _DEFAULT_EXTRACTOR.extract(audio)
