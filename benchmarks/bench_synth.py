"""How long synthesising a corpus takes (run by hand; never a timed test).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_synth.py [--workers N] [--skip-full]

Prints the median wall time of three runs of a small case (4 multitracks x 10 s) and one run
of the target case (20 multitracks x 30 s, budget: 60 s on the 2-core development machine).
The machine's load average is printed too: other jobs on a shared machine slow every number.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from stemstore.synth.corpus import synthesize_corpus


def run_once(n_multitracks: int, seconds: float, workers: int | None) -> tuple[float, int, int, int]:
    """Wall time of one synthesis into a fresh temporary directory, and what it wrote."""
    root = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        started = time.perf_counter()
        summary = synthesize_corpus(
            root, n_multitracks=n_multitracks, seconds=seconds, seed=0, workers=workers
        )
        elapsed = time.perf_counter() - started
        size = sum(p.stat().st_size for p in root.rglob("*.wav"))
        return elapsed, summary.n_stems, summary.n_raws, size
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    parser.add_argument("--skip-full", action="store_true", help="only the small case")
    args = parser.parse_args()
    print(f"cpus={os.cpu_count()} load average at start={os.getloadavg()}")

    small = [run_once(4, 10.0, args.workers) for _ in range(3)]
    times = [s[0] for s in small]
    print(
        f"small  4 x 10 s: median {statistics.median(times):.2f} s "
        f"(runs {', '.join(f'{t:.2f}' for t in times)}; {small[0][1]} stems, {small[0][2]} raws)"
    )

    if not args.skip_full:
        elapsed, n_stems, n_raws, size = run_once(20, 30.0, args.workers)
        verdict = "within" if elapsed <= 60 else "OVER"
        print(
            f"full  20 x 30 s: {elapsed:.2f} s ({verdict} the 60 s budget; {n_stems} stems, "
            f"{n_raws} raws, {size / 1e6:.0f} MB of WAV)"
        )
    print(f"load average at end={os.getloadavg()}")


if __name__ == "__main__":
    main()
