"""Ingest timings on DuckDB: first ingest and re-ingest of a synthetic corpus.

Run by hand (not a test): ``.venv/bin/python benchmarks/bench_ingest.py [--multitracks 20]
[--seconds 30] [--repeats 5] [--corpus DIR]``. The corpus is synthesised once into DIR (default
a temporary directory) and reused when DIR already holds it. Targets (issue 3): first ingest
of 20 multitracks × 30 s ≤ 10 s, re-ingest ≤ 2 s.

The first ingest is timed with the files in the page cache (just written), as a re-run on the
same machine would see them; a cold cache adds the disk's read time for the audio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from stemstore.corpus.ingest import ingest
from stemstore.store.connection import Store
from stemstore.synth.corpus import synthesize_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--multitracks", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=5, help="re-ingests to take the median of")
    parser.add_argument("--corpus", type=Path, default=None, help="where to synthesise (reused if present)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus or Path(tmp) / "corpus"
        if not any(corpus.glob("*/*_METADATA.yaml")):
            started = time.perf_counter()
            synthesize_corpus(corpus, n_multitracks=args.multitracks, seconds=args.seconds)
            print(
                f"synthesised {args.multitracks} × {args.seconds:g} s in {time.perf_counter() - started:.1f} s"
            )
        n_files = sum(1 for _ in corpus.glob("*/**/*.wav"))
        size = sum(p.stat().st_size for p in corpus.glob("*/**/*.wav")) / 1e6

        store = Store.open(str(Path(tmp) / "bench.duckdb"), create=True, check_schema=False)
        store.init()
        started = time.perf_counter()
        first = ingest(store, corpus)
        first_s = time.perf_counter() - started
        print(f"first ingest: {first_s:.2f} s for {n_files} files, {size:.0f} MB  ({first.describe()})")

        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            again = ingest(store, corpus)
            times.append(time.perf_counter() - started)
        print(
            f"re-ingest: median {statistics.median(times):.3f} s over {args.repeats} "
            f"(min {min(times):.3f}, max {max(times):.3f})  ({again.describe()})"
        )

        # touch every file: sizes equal, mtimes new -> every file is re-hashed, nothing changes
        now = time.time()
        for p in corpus.glob("*/**/*.wav"):
            os.utime(p, (now, now))
        started = time.perf_counter()
        touched = ingest(store, corpus)
        print(
            f"re-ingest after touching every file (all re-hashed): {time.perf_counter() - started:.2f} s "
            f"({len(touched.changed_files)} changed)"
        )
        store.close()


if __name__ == "__main__":
    main()
