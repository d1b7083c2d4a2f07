"""Time FeatureExtractor.extract against Essentia's all-in-one Extractor on the same audio.

Run by hand (never part of the test suite)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_features.py [--runs 9] [--seconds 10]

Both are timed side by side in one process, interleaved (a random order in every round), on a
10-s synthetic segment (tones, noise bursts, percussive onsets, pre-processed like real
segments); the medians and their ratio are printed, and the median of the per-round ratios,
which drifting load on the machine disturbs least. The target: the whole catalog costs no more
than Essentia's Extractor() (a ratio of at most 1.0), judged on CPU time.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

import essentia
import essentia.standard as es

from stemstore.audio import SAMPLE_RATE, preprocess
from stemstore.features.extractor import FeatureExtractor

essentia.log.infoActive = False
essentia.log.warningActive = False  # the Extractor's network teardown warns on every run

TARGET_RATIO = 1.0


def synthetic_segment(seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """A music-like test signal: a chord with vibrato, noise bursts and a regular beat."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    vibrato = 3.0 * np.sin(2 * np.pi * 5.0 * t)
    tones = sum(
        amp * np.sin(2 * np.pi * (f + vibrato) * t)
        for f, amp in ((220.0, 0.20), (277.2, 0.12), (329.6, 0.10), (880.0, 0.05))
    )
    tones *= 0.7 + 0.3 * np.sin(2 * np.pi * 0.25 * t)
    audio = tones + rng.normal(0.0, 0.003, n)
    beat = int(0.5 * SAMPLE_RATE)  # 120 BPM kick-like onsets
    decay = np.exp(-np.arange(4000) / 600.0)
    for start in range(0, n - 4000, beat):
        audio[start : start + 4000] += 0.5 * np.sin(2 * np.pi * 60.0 * np.arange(4000) / SAMPLE_RATE) * decay
    for _ in range(6):  # noise bursts (snare/hi-hat like)
        start = int(rng.integers(0, n - 20000))
        length = int(rng.integers(3000, 20000))
        audio[start : start + length] += rng.normal(0.0, 0.15, length) * np.exp(
            -np.arange(length) / (length / 4)
        )
    return preprocess(audio.astype(np.float32))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="timed runs of each (median reported)")
    parser.add_argument("--seconds", type=float, default=10.0, help="segment length")
    args = parser.parse_args()

    audio = synthetic_segment(args.seconds)
    ours = FeatureExtractor()
    reference = es.Extractor()
    ours.extract(audio)  # warm-up: first calls allocate FFT plans and caches
    reference(audio)

    # CPU time of this process is the measure (other load on a shared machine inflates
    # wall-clock time far more); wall time is printed too. The order within each round is
    # random so that neither side always runs in the other's wake.
    wall: dict[str, list[float]] = {"ours": [], "reference": []}
    cpu: dict[str, list[float]] = {"ours": [], "reference": []}
    contenders = [("ours", ours.extract), ("reference", reference)]
    rng = random.Random(0)
    for _ in range(args.runs):
        for key, run in rng.sample(contenders, len(contenders)):
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            run(audio)
            wall[key].append(time.perf_counter() - wall_start)
            cpu[key].append(time.process_time() - cpu_start)

    print(f"segment: {args.seconds:g} s, {args.runs} runs each, interleaved")
    for label, times in (("wall", wall), ("cpu", cpu)):
        ours_median = statistics.median(times["ours"])
        reference_median = statistics.median(times["reference"])
        print(
            f"[{label}] FeatureExtractor.extract (1812 features): median {ours_median * 1000:7.1f} ms"
            f" (min {min(times['ours']) * 1000:.1f})"
        )
        print(
            f"[{label}] essentia.standard.Extractor():            median {reference_median * 1000:7.1f} ms"
            f" (min {min(times['reference']) * 1000:.1f})"
        )
        ratio = ours_median / reference_median
        verdict = "within" if ratio <= TARGET_RATIO else "ABOVE"
        print(f"[{label}] ratio of medians: {ratio:.3f} ({verdict} the {TARGET_RATIO} target)")
        paired = statistics.median(o / r for o, r in zip(times["ours"], times["reference"]))
        print(f"[{label}] median of per-round ratios: {paired:.3f}")


if __name__ == "__main__":
    main()
