"""Mixing chains: the pedalboard chain that turns an instrument's summed raws into its stem."""

from __future__ import annotations


import math
from collections.abc import Callable

import numpy as np
import pedalboard

from stemstore.synth.structures import INSTRUMENT_GROUP
from stemstore.synth.microphones import quantise


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

    Its threshold is set by :func:`mix_stem` to ``above_loud_db`` over the loud level of
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


def peak_db(x: np.ndarray) -> float:
    return 20 * math.log10(float(np.max(np.abs(x))) + 1e-12)


def _loud_level_db(x: np.ndarray, sr: int) -> float:
    """Level of the loud passages: 95th percentile of 50 ms RMS, in dBFS."""
    block = max(1, int(0.05 * sr))
    n_blocks = max(1, len(x) // block)
    padded = np.zeros(n_blocks * block)
    padded[: min(len(x), len(padded))] = x[: len(padded)]
    rms = np.sqrt(np.mean(padded.reshape(n_blocks, block) ** 2, axis=1))
    return 20 * math.log10(float(np.percentile(rms, 95)) + 1e-12)


def mix_stem(
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
    fader = _step("Gain", "fader", gain_db=rng.uniform(-6, -1) - peak_db(stem))
    chain.append(fader)
    stem = chain_from_spec([fader])(stem, sr)
    return quantise(stem.astype(np.float64)), raw_gains_db, chain
