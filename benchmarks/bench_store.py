"""Store scale: write 1,000 segments × 1,812 feature values, read one group back wide.

Targets (issue 2): write ≤ 10 s, wide read ≤ 2 s on DuckDB on a 2-core machine.
Run by hand:  .venv/bin/python benchmarks/bench_store.py [--postgres] [--repeat 3]
With --postgres it starts a throwaway PostgreSQL cluster (tests/pgcluster.py) and measures there too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stemstore.store import bulk  # noqa: E402
from stemstore.store.catalog import feature_names  # noqa: E402
from stemstore.store.connection import Store  # noqa: E402


def synthetic_file(path: Path, n_segments: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    names = list(feature_names())
    n_pairs = n_segments // 2
    meta = pd.DataFrame(
        {
            "multitrack": np.repeat([f"bench-{i:04d}" for i in range(n_pairs)], 2),
            "instrument": "electric bass",
            "role": np.tile(["raw", "stem"], n_pairs),
            "pair": np.repeat([f"bench-{i:04d}" for i in range(n_pairs)], 2),
        }
    )
    values = pd.DataFrame(rng.standard_normal((len(meta), len(names))), columns=names)
    pd.concat([meta, values], axis=1).to_parquet(path)
    return path


def measure(url: str, source: Path, repeat: int) -> dict[str, float]:
    writes, reads = [], []
    for _ in range(repeat):
        store = Store.open(url, create=True, check_schema=False)
        store.downgrade("base")
        store.init()
        t0 = time.perf_counter()
        bulk.import_features(store, source)
        writes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        wide = bulk.feature_matrix(store, group="bass")
        reads.append(time.perf_counter() - t0)
        assert wide.shape == (1000, 5 + 1812), wide.shape
        store.close()
    return {
        "write_median_s": statistics.median(writes),
        "read_median_s": statistics.median(reads),
        "write_all": writes,
        "read_all": reads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", action="store_true", help="also measure on PostgreSQL")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = synthetic_file(Path(tmp) / "bench.parquet", 1000)
        print(f"1,000 segments × 1,812 features ({1000 * 1812:,} values), median of {args.repeat}")
        duck = measure(str(Path(tmp) / "bench.duckdb"), source, args.repeat)
        print(f"duckdb     write {duck['write_median_s']:.2f} s   wide read {duck['read_median_s']:.2f} s")
        if args.postgres:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from pgcluster import PostgresCluster

            cluster = PostgresCluster().start()
            try:
                pg = measure(cluster.create_database("bench"), source, args.repeat)
            finally:
                cluster.stop()
            print(f"postgresql write {pg['write_median_s']:.2f} s   wide read {pg['read_median_s']:.2f} s")


if __name__ == "__main__":
    main()
