"""Time the feature pipeline on the synthetic corpus: end to end, and 1 vs 2 workers.

Run by hand (never part of the test suite)::

    .venv/bin/python benchmarks/bench_extraction.py [--multitracks 20] [--seconds 30]
        [--segments 24] [--repeats 3] [--corpus /tmp/stemstore-bench-corpus]

1. **End to end**: ingest -> segment (10-s windows) -> extract (2 workers) of the
   ``--multitracks`` x ``--seconds`` synthetic corpus into a new DuckDB store. Target: within
   3 minutes for 20 x 30 s. The corpus is synthesised first if ``--corpus`` has none (not timed).
2. **Throughput**: ``extract`` of the same ``--segments`` pending 10-s segments with 1 and with
   2 local workers, each on a fresh copy of the segmented store, ``--repeats`` times; medians.
   Target: 2 workers >= 1.7x the segments/s of 1. The time includes starting the workers.
   "CPUs busy" (CPU seconds of this process and its workers / wall seconds) tells a busy
   machine (2 workers getting < 2 CPUs) from a scaling problem.

The machine may be shared: timings are noisy, so medians are reported, with the load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from stemstore.features.extraction import extract
from stemstore.corpus.ingest import ingest
from stemstore.segments import segment
from stemstore.store.connection import Store
from stemstore.synth.corpus import synthesize_corpus

TARGET_SPEEDUP = 1.7
TARGET_END_TO_END_S = 180.0


def _corpus(path: Path, multitracks: int, seconds: float) -> Path:
    marker = path / f".bench-{multitracks}x{seconds:g}s"
    if not marker.exists():
        shutil.rmtree(path, ignore_errors=True)
        started = time.perf_counter()
        synthesize_corpus(path, n_multitracks=multitracks, seconds=seconds, seed=0)
        marker.touch()
        print(
            f"synthesised {multitracks} x {seconds:g} s into {path} in {time.perf_counter() - started:.1f} s "
            "(not part of the timings)"
        )
    return path


def _store(path: Path, create: bool = False) -> Store:
    store = Store.open(str(path), create=create, check_schema=not create)
    if create:
        store.init()
    return store


def end_to_end(corpus: Path, work: Path, workers: int) -> Path:
    """Time ingest -> segment -> extract; returns a copy of the store as it was before extract."""
    db = work / "e2e.duckdb"
    template = work / "segmented.duckdb"
    times = {}
    started = time.perf_counter()
    with _store(db, create=True) as store:
        t = time.perf_counter()
        ingested = ingest(store, corpus)
        times["ingest"] = time.perf_counter() - t
        t = time.perf_counter()
        made = segment(store, window=10.0)
        times["segment"] = time.perf_counter() - t
    shutil.copy(db, template)  # the segmented store, for the throughput runs (not timed)
    paused = time.perf_counter()
    with _store(db) as store:
        t = time.perf_counter()
        done = extract(store, workers=workers)
        times["extract"] = time.perf_counter() - t
    total = time.perf_counter() - started - (t - paused)
    print(
        f"\nend to end ({workers} workers): {ingested.describe() if hasattr(ingested, 'describe') else ingested}"
    )
    print(f"  {made.describe()}")
    print(f"  {done.describe().splitlines()[0]}")
    for stage, seconds in times.items():
        print(f"  {stage:8s} {seconds:7.1f} s")
    verdict = "OK" if total <= TARGET_END_TO_END_S else "over target"
    print(f"  total    {total:7.1f} s   (target <= {TARGET_END_TO_END_S:.0f} s: {verdict})")
    return template


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def throughput(template: Path, work: Path, n_segments: int, repeats: int) -> None:
    rates: dict[int, list[float]] = {1: [], 2: []}
    for repeat in range(repeats):
        for workers in (1, 2):
            db = work / f"throughput-{workers}.duckdb"
            shutil.copy(template, db)
            cpu_before = _cpu_seconds()
            with _store(db) as store:
                summary = extract(store, workers=workers, limit=n_segments)
            cores = (_cpu_seconds() - cpu_before) / summary.seconds
            rate = summary.extracted / summary.seconds
            rates[workers].append(rate)
            print(
                f"  repeat {repeat + 1}: {workers} worker(s): {summary.extracted} segments in "
                f"{summary.seconds:.1f} s = {rate:.2f} segments/s; CPUs busy {cores:.2f} "
                f"(load average {os.getloadavg()[0]:.1f})"
            )
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    verdict = "OK" if two / one >= TARGET_SPEEDUP else "below target"
    print(
        f"\nthroughput, median of {repeats}: 1 worker {one:.2f} segments/s, 2 workers {two:.2f} segments/s: "
        f"{two / one:.2f}x (target >= {TARGET_SPEEDUP}x: {verdict}); {os.cpu_count()} CPUs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--multitracks", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--segments", type=int, default=24, help="segments per throughput run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="workers of the end-to-end run")
    parser.add_argument("--corpus", type=Path, default=Path(tempfile.gettempdir()) / "stemstore-bench-corpus")
    args = parser.parse_args()

    corpus = _corpus(args.corpus, args.multitracks, args.seconds)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="stemstore-bench-") as tmp:
        work = Path(tmp)
        template = end_to_end(corpus, work, args.workers)
        print(f"\nthroughput of {args.segments} pending 10-s segments:")
        throughput(template, work, args.segments, args.repeats)


if __name__ == "__main__":
    main()
