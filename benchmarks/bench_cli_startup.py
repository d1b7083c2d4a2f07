"""Time quick `stemstore` commands end to end, where start-up is nearly all of the time.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_cli_startup.py [--baseline ../base-checkout]
        [--repeat 7]

Each command runs as a fresh subprocess of the checkout's CLI (as in bench_regress_cli.py, which
this script borrows its runner from) on a store holding the bass reference pairs: ``--help``,
``regress --help``, ``status`` and ``report table2``. With ``--baseline`` the two checkouts'
runs are interleaved. Printed: the median wall seconds of each command and the ratio of the
medians. No target: these are the costs every command pays before doing its work.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench_regress_cli import HERE, make_store, stemstore

COMMANDS = {
    "--help": ["--help"],
    "regress --help": ["regress", "--help"],
    "status": ["status"],
    "report table2": ["report", "table2", "--group", "bass"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="a checkout to compare with (before)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    checkouts = {"after": HERE}
    if args.baseline:
        checkouts = {"before": args.baseline.resolve(), **checkouts}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        stores = {}
        for label, checkout in checkouts.items():
            folder = Path(tmp) / label
            folder.mkdir()
            stores[label] = make_store(checkout, folder, "bass")
        for name, argv in COMMANDS.items():
            walls: dict[str, list[float]] = {label: [] for label in checkouts}
            for _ in range(args.repeat):
                for label, checkout in checkouts.items():
                    db = [] if argv[-1] == "--help" else ["--db", str(stores[label])]
                    walls[label].append(stemstore(checkout, *argv, *db)[0])
            medians = {label: statistics.median(w) for label, w in walls.items()}
            line = ", ".join(f"{label} {m:.2f} s" for label, m in medians.items())
            if "before" in medians:
                line += f"; after/before {medians['after'] / medians['before']:.2f}"
            print(f"{name:15s} median wall: {line}", flush=True)


if __name__ == "__main__":
    main()
