"""Check that the working tree's extractor gives bit-identical values to a committed version.

Run by hand after changing how the extraction calls Essentia (never part of the test suite)::

    PYTHONPATH=. .venv/bin/python benchmarks/check_features_unchanged.py [--rev HEAD]

The extractor module of ``--rev`` (read with ``git show``) and the working tree's are loaded
side by side in one process and run on varied segments: music-like signals of several lengths
and seeds, a pure tone, white noise, digital silence, a signal with a silent gap, a quiet one
and a segment barely longer than one frame. Every one of the 1812 values must be equal (NaN
where the other is NaN, the same infinities). Exits non-zero on any difference.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench_features import synthetic_segment
from stemstore.audio import SAMPLE_RATE, preprocess
from stemstore.features.extractor import FeatureExtractor


def committed_extractor(rev: str) -> FeatureExtractor:
    """A FeatureExtractor built from the extractor module as committed at ``rev``."""
    source = subprocess.run(
        ["git", "show", f"{rev}:stemstore/features/extractor.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "committed_extractor.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("committed_extractor", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FeatureExtractor()


def varied_segments() -> dict[str, np.ndarray]:
    """Segments that exercise every code path: silent frames, no beats, a single frame."""
    rng = np.random.default_rng(11)
    t = np.arange(10 * SAMPLE_RATE) / SAMPLE_RATE
    gap = synthetic_segment(10.0, seed=3).copy()
    gap[3 * SAMPLE_RATE : 6 * SAMPLE_RATE] = 0.0
    segments = {
        f"music_{seconds:g}s_seed{seed}": synthetic_segment(seconds, seed)
        for seconds, seed in ((10.0, 0), (10.0, 1), (7.3, 2), (30.0, 4), (3.0, 5))
    }
    raw = {
        "tone": 0.3 * np.sin(2 * np.pi * 441.0 * t),
        "white_noise": rng.normal(0.0, 0.1, t.size),
        "quiet": 1e-4 * rng.normal(0.0, 1.0, t.size),
        "one_frame": rng.normal(0.0, 0.1, 2500),
    }
    segments.update({name: preprocess(audio.astype(np.float32))[0] for name, audio in raw.items()})
    segments["music_with_gap"] = gap
    segments["silence"] = np.zeros(t.size, dtype=np.float32)  # preprocess refuses silence
    return segments


def identical(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise: equal values, equal infinities, or NaN on both sides."""
    return (a == b) | (np.isnan(a) & np.isnan(b))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="the committed version to compare with")
    args = parser.parse_args()
    old, new = committed_extractor(args.rev), FeatureExtractor()
    names = np.array(new.names)
    failed = False
    for name, audio in varied_segments().items():
        before, after = old.extract(audio), new.extract(audio)
        same = identical(before, after)
        print(f"{name:24s} {int(same.sum()):4d}/{same.size} identical")
        if not same.all():
            failed = True
            for feature in names[~same][:10]:
                i = new.names.index(feature)
                print(f"    {feature}: {before[i]!r} -> {after[i]!r}")
    print("DIFFERENT" if failed else f"all values bit-identical to {args.rev}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
