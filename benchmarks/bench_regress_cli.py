"""Time `stemstore regress` end to end through the CLI, one group of the reference pairs (issue 12).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_regress_cli.py [--baseline ../base-checkout]
        [--groups bass guitar] [--presets paper tuned] [--repeat 3] [--jobs N]

Per checkout (this one, and ``--baseline`` when given, e.g. a worktree of an older commit) it
makes a store in a temporary folder with ``stemstore init`` and ``stemstore import-features
<group>-pairs.csv`` (the study's reference values), then times ``stemstore regress --group G
--preset P --features <the file's features>`` as a subprocess, each repeat on a fresh copy of
that store. The checkouts' runs are interleaved, so a change in the machine's load hits both.
Printed: median wall and CPU seconds (the subprocess's user + system time) of each, and the
ratio of the medians. Targets (one group): paper <= 3 s, tuned <= 20 s.

With the paper preset, each repeat also times the floor under any implementation of the
command on this machine, interleaved with the runs: a fresh Python that runs no stemstore code,
only imports the data stack the store is built on (pandas, SQLAlchemy, DuckDB) and the modules of
the preset's five scikit-learn estimators, then fits the preset's forest (1000 trees for bass) on
random data as large as the run's training set. It prints the median wall time of that process and of its two
parts.

Each subprocess runs the checkout's own CLI and migrations whatever package the environment has
installed in editable mode (the two checkouts cannot both be the installed one).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from stemstore.analysis.regression import PAPER_HYPERPARAMETERS

HERE = Path(__file__).resolve().parents[1]
# the shared folder beside the checkout (as in tests/conftest.py)
REFERENCE = HERE.parent / "shared" / "data" / "aes143-reference"
TARGETS = {"paper": 3.0, "tuned": 20.0}
ID_COLUMNS = ("multitrack", "instrument", "role", "pair", "split")

# Run the CLI from the checkout in argv[1], with its own stemstore.migrations, stemstore.queries
# and stemstore.cli (package-dir mappings that an editable install would point elsewhere); a
# checkout from before the cli/ folder was installed as stemstore.cli imports it as `cli`.
BOOTSTRAP = """
import importlib.machinery, os, sys
root = sys.argv.pop(1)
sys.path.insert(0, root)
folders = {"stemstore.migrations": "migrations", "stemstore.queries": "queries", "stemstore.cli": "cli"}
class Finder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name in folders:
            return importlib.machinery.PathFinder.find_spec(name, [root])
        parent = name.rpartition(".")[0]
        if parent in folders:
            return importlib.machinery.PathFinder.find_spec(name, [os.path.join(root, folders[parent])])
        return None
sys.meta_path.insert(0, Finder)
sys.argv[0] = "stemstore"
if os.path.isdir(os.path.join(root, "stemstore", "store")):
    from stemstore.cli.app import main
else:
    from cli.app import main
main()
"""


# The floor of a paper run (see the module doc): imports, then the preset's forest. Prints the
# seconds spent importing and fitting.
FLOOR = """
import sys, time
start = time.perf_counter()
import duckdb, pandas, sqlalchemy
from sklearn.cross_decomposition import PLSRegression
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor
from sklearn.svm import SVR
imported = time.perf_counter()
import numpy as np
pairs, features, trees = map(int, sys.argv[1:])
rng = np.random.default_rng(0)
x, y = rng.normal(size=(pairs, features)), rng.normal(size=(pairs, features))
RandomForestRegressor(n_estimators=trees, random_state=0).fit(x, y)
print(imported - start, time.perf_counter() - imported)
import gc
gc.freeze()  # as stemstore's CLI does: no collection over the imports' objects at exit
"""


def floor(pairs: int, features: int, trees: int) -> tuple[float, float, float]:
    """Wall seconds of the FLOOR process: (whole process, its imports, its forest fit)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", FLOOR, str(pairs), str(features), str(trees)],
        capture_output=True,
        text=True,
        check=True,
    )
    imports, fit = map(float, done.stdout.split())
    return time.perf_counter() - start, imports, fit


def stemstore(checkout: Path, *args: str, check: bool = True) -> tuple[float, float, str]:
    """Run the checkout's CLI with ``args``: (wall s, CPU s, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", BOOTSTRAP, str(checkout), *args], capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if check and done.returncode != 0:
        raise SystemExit(f"{checkout}: stemstore {' '.join(args)} failed:\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def make_store(checkout: Path, folder: Path, group: str) -> Path:
    """A store holding the group's reference pairs, made by the checkout's CLI."""
    db = folder / "template.duckdb"
    stemstore(checkout, "init", "--db", str(db))
    stemstore(checkout, "import-features", str(REFERENCE / f"{group}-pairs.csv"), "--db", str(db))
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="a checkout to compare with (before)")
    parser.add_argument("--groups", nargs="+", default=["bass", "guitar"])
    parser.add_argument("--presets", nargs="+", default=["paper", "tuned"], choices=list(TARGETS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=None, help="--jobs for regress (default: none)")
    args = parser.parse_args()

    checkouts = {"after": HERE}
    if args.baseline:
        checkouts = {"before": args.baseline.resolve(), **checkouts}
    with tempfile.TemporaryDirectory(prefix="bench-regress-") as tmp:
        for group in args.groups:
            columns = pd.read_csv(REFERENCE / f"{group}-pairs.csv", nrows=0).columns
            feature_names = [c for c in columns if c not in ID_COLUMNS]
            features = ",".join(feature_names)
            trees = PAPER_HYPERPARAMETERS[group]["rf"]["n_estimators"]
            templates = {}
            for label, checkout in checkouts.items():
                folder = Path(tmp) / f"{group}-{label}"
                folder.mkdir()
                templates[label] = make_store(checkout, folder, group)
            for preset in args.presets:
                times: dict[str, list[tuple[float, float]]] = {label: [] for label in checkouts}
                floors: list[tuple[float, float, float]] = []
                summary = {}
                for i in range(args.repeat):
                    for label, checkout in checkouts.items():
                        db = templates[label].with_name(f"run{i}-{preset}.duckdb")
                        shutil.copyfile(templates[label], db)
                        command = ["regress", "--group", group, "--preset", preset, "--features", features]
                        if args.jobs is not None:
                            command += ["--jobs", str(args.jobs)]
                        wall, cpu, out = stemstore(checkout, *command, "--db", str(db))
                        times[label].append((wall, cpu))
                        summary[label] = out.strip().split("; ", 1)[-1]
                        os.remove(db)
                    if preset == "paper":  # the floor's forest fits as many pairs as the run's did
                        training = int(re.search(r"(\d+) training", out).group(1))
                        floors.append(floor(training, len(feature_names), trees))
                medians = {
                    label: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
                    for label, t in times.items()
                }
                for label, (wall, cpu) in medians.items():
                    runs = ", ".join(f"{w:.1f}" for w, _ in times[label])
                    print(
                        f"{group:7s} {preset:5s} {label:6s}: median wall {wall:6.2f} s, CPU {cpu:6.2f} s "
                        f"(walls {runs}; target {TARGETS[preset]:.0f} s) -> {summary[label]}",
                        flush=True,
                    )
                if floors:
                    whole, imports, fit = (statistics.median(f[k] for f in floors) for k in range(3))
                    print(
                        f"{group:7s} {preset:5s} floor : median wall {whole:6.2f} s (imports {imports:.2f} s,"
                        f" {trees}-tree forest on {training} x {len(feature_names)} {fit:.2f} s;"
                        f" walls {', '.join(f'{f[0]:.1f}' for f in floors)})",
                        flush=True,
                    )
                if "before" in medians:
                    (wb, cb), (wa, ca) = medians["before"], medians["after"]
                    print(f"{group:7s} {preset:5s} after/before: wall {wa / wb:.2f}, CPU {ca / cb:.2f}")


if __name__ == "__main__":
    main()
