"""Microphones: a performance recorded as raw tracks (delay, filtering, room, noise, level)."""

from __future__ import annotations


import math

import numpy as np
import pedalboard


_PCM24_STEP = 1.0 / (1 << 23)


# Which microphone records the i-th raw track of an instrument (cycled if there are more).
MICS_FOR = {
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


def draw_mic(kind: str, rng: np.random.Generator) -> dict:
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


def room_sound(performance: np.ndarray, room_size: float, sr: int) -> np.ndarray:
    """What the room adds to a performance (reverb only, no direct sound)."""
    reverb = pedalboard.Reverb(room_size=room_size, wet_level=1.0, dry_level=0.0, width=0.0)
    return reverb(performance.astype(np.float32), sr).astype(np.float64)


def record(
    performance: np.ndarray, room: np.ndarray | None, mic: dict, sr: int, rng: np.random.Generator
) -> np.ndarray:
    """The raw track a microphone makes of a performance, quantised to 24 bits.

    ``room`` is the room's reverb of the performance (:func:`room_sound`), shared by all
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
    return quantise(x)


def quantise(x: np.ndarray) -> np.ndarray:
    """Round to the 24-bit PCM grid (what soundfile will write and read back)."""
    return np.clip(np.round(x / _PCM24_STEP), -(1 << 23), (1 << 23) - 1) * _PCM24_STEP
