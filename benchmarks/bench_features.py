"""Time FeatureExtractor.extract against Essentia's all-in-one Extractor on the same audio.

Run by hand (never part of the test suite)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_features.py [--runs 9] [--seconds 10] [--rev REV]
    PYTHONPATH=. .venv/bin/python benchmarks/bench_features.py --instructions [--checkout DIR] [--top 25]

Both are timed side by side in one process, interleaved (a random order in every round), on a
10-s synthetic segment (tones, noise bursts, percussive onsets, pre-processed like real
segments); the medians and their ratio are printed, and the median of the per-round ratios,
which drifting load on the machine disturbs least. ``--rev`` adds the extractor as committed at
REV (e.g. the commit before a change) to every round, so that a change is measured against
its predecessor under the same conditions. The target: the whole catalog costs no more
than Essentia's Extractor() (a ratio of at most 1.0), judged on CPU time.

CPU time on this shared virtual machine drifts by several per cent between runs, more than the
differences worth measuring here. ``--instructions`` counts instead the machine instructions
that one call of each executes, with valgrind's callgrind (Debian package ``valgrind``; a few
minutes): each side runs in two child processes that set up and warm up alike and then call
it 0 and ``--calls`` times; the difference over ``--calls`` is one call's count, the same on
every run. Instructions are not time (Essentia's FFTs do more per instruction than Python
does), so this complements the timed ratio and is the figure to compare two versions with:
``--checkout`` measures another checkout's extractor (e.g. a worktree of an older commit).
It also lists where the two differ: the instructions one call spends inside each standard-mode
Essentia algorithm (inclusive of the algorithms it calls), ours against the Extractor's, the
``--top`` largest differences first. The Extractor's streaming network calls the same
standard-mode computes, so shared work cancels out; its composites (the rhythm extractor, the
onset rate) have no standard-mode name there, so ours show up in full.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

import essentia
import essentia.standard as es

from stemstore.audio import SAMPLE_RATE, preprocess
from stemstore.features.extractor import FeatureExtractor

essentia.log.infoActive = False
essentia.log.warningActive = False  # the Extractor's network teardown warns on every run

TARGET_RATIO = 1.0
HERE = Path(__file__).resolve().parents[1]


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


def call_repeatedly(side: str, calls: int, seconds: float) -> None:
    """Child of ``--instructions``: set up and warm up ``side``, then call it ``calls`` times."""
    audio = synthetic_segment(seconds)
    run = FeatureExtractor().extract if side == "ours" else es.Extractor()
    run(audio)
    for _ in range(calls):
        run(audio)


def instructions_per_call(side: str, calls: int, seconds: float, checkout: Path) -> tuple[int, Counter]:
    """Instructions one call of ``side`` executes, counted by callgrind (see the module doc),
    and the same per Essentia algorithm (inclusive of what its compute calls)."""
    counts, per_algorithm = [], []
    for n in (0, calls):
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run(
                ["valgrind", "--tool=callgrind", "--cache-sim=no", f"--callgrind-out-file={tmp}/out"]
                + [sys.executable, __file__, "--child", side, "--calls", str(n), "--seconds", str(seconds)],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(checkout), "PYTHONHASHSEED": "0"},
                cwd=checkout,
            )
            collected = re.search(r"Collected : (\d+)", done.stderr)
            if done.returncode != 0 or collected is None:
                raise SystemExit(f"callgrind run of {side} failed:\n{done.stderr[-2000:]}")
            counts.append(int(collected.group(1)))
            per_algorithm.append(algorithm_instructions(Path(tmp) / "out"))
    one_call = Counter(
        {name: round((per_algorithm[1][name] - per_algorithm[0][name]) / calls) for name in per_algorithm[1]}
    )
    return round((counts[1] - counts[0]) / calls), one_call


def algorithm_instructions(callgrind_out: Path) -> Counter:
    """Inclusive instructions of each standard-mode Essentia algorithm's compute in a callgrind
    profile, summed over calls (``callgrind_annotate``, which comes with valgrind)."""
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(callgrind_out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = Counter()
    for count, name in re.findall(
        r"^\s*([\d,]+) \(.*?essentia::standard::(\w+)::compute\(\)", annotated, re.M
    ):
        found[name] += int(count.replace(",", ""))
    return found


def count_instructions(args: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind: apt-get install valgrind")
    checkout = (args.checkout or HERE).resolve()
    print(f"segment: {args.seconds:g} s; instructions per call, callgrind, {args.calls} calls; {checkout}")
    ours, ours_algorithms = instructions_per_call("ours", args.calls, args.seconds, checkout)
    reference, reference_algorithms = instructions_per_call("reference", args.calls, args.seconds, checkout)
    print(f"FeatureExtractor.extract (1812 features): {ours / 1e9:.3f} G instructions")
    print(f"essentia.standard.Extractor():            {reference / 1e9:.3f} G instructions")
    ratio = ours / reference
    verdict = "within" if ratio <= TARGET_RATIO else "ABOVE"
    print(f"ratio: {ratio:.3f} ({verdict} the {TARGET_RATIO} target)")
    # Where the two differ, by standard-mode Essentia algorithm (see the module doc). Inclusive
    # counts: an algorithm's count includes those of the algorithms it calls.
    print("largest differences by algorithm, M instructions per call (ours, Extractor(), difference):")
    names = (set(ours_algorithms) | set(reference_algorithms)) - {"Extractor"}
    for name in sorted(names, key=lambda n: -abs(ours_algorithms[n] - reference_algorithms[n]))[: args.top]:
        o, r = ours_algorithms[name], reference_algorithms[name]
        print(f"  {name:32s} {o / 1e6:8.1f} {r / 1e6:8.1f} {(o - r) / 1e6:+8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="timed runs of each (median reported)")
    parser.add_argument("--seconds", type=float, default=10.0, help="segment length")
    parser.add_argument("--rev", help="also time the extractor as committed at this revision")
    parser.add_argument("--instructions", action="store_true", help="count instructions (callgrind)")
    parser.add_argument("--calls", type=int, default=2, help="calls counted per side (--instructions)")
    parser.add_argument("--top", type=int, default=25, help="algorithms listed (--instructions)")
    parser.add_argument("--checkout", type=Path, help="another checkout's extractor (--instructions)")
    parser.add_argument("--child", choices=["ours", "reference"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return call_repeatedly(args.child, args.calls, args.seconds)
    if args.instructions:
        return count_instructions(args)

    audio = synthetic_segment(args.seconds)
    ours = FeatureExtractor()
    reference = es.Extractor()
    contenders = {"ours": ours.extract, "reference": reference}
    if args.rev:
        from check_features_unchanged import committed_extractor

        contenders["committed"] = committed_extractor(args.rev).extract
    for run in contenders.values():
        run(audio)  # warm-up: first calls allocate FFT plans and caches

    # CPU time of this process is the measure (other load on a shared machine inflates
    # wall-clock time far more); wall time is printed too. The order within each round is
    # random so that neither side always runs in the other's wake.
    wall: dict[str, list[float]] = {key: [] for key in contenders}
    cpu: dict[str, list[float]] = {key: [] for key in contenders}
    rng = random.Random(0)
    for _ in range(args.runs):
        for key, run in rng.sample(sorted(contenders.items()), len(contenders)):
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
        if args.rev:
            committed = times["committed"]
            print(
                f"[{label}] {args.rev} committed: median {statistics.median(committed) * 1000:7.1f} ms;"
                f" per-round ratios: committed / Extractor()"
                f" {statistics.median(c / r for c, r in zip(committed, times['reference'])):.3f},"
                f" working tree / committed {statistics.median(o / c for o, c in zip(times['ours'], committed)):.3f}"
            )


if __name__ == "__main__":
    main()
