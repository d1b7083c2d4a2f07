"""Time the random-forest feature selection (stemstore.analysis.selection) against VSURF.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_selection.py [--n-jobs 2] [--repeats 3]
        [--seeds 5] [--paper] [--paper-seeds 1] [--paper-forests 50] [--no-r] [--vendor DIR]

On a synthetic 136 x 1812 matrix shaped like one instrument group (68 raw and 68 stem
segments, 1812 features of which a few carry the label), side by side in one run:

* per tree (one core): fitting with the 604-of-1812 features per split of the paper
  preset and the permutation importance, for the compiled backend ("numba") and the
  scikit-learn reference backend ("sklearn");
* the "fast" preset with both backends, ``--repeats`` times each, interleaved: median wall
  time and the process's CPU time (CPU time is only meaningful for the numba backend,
  whose threads run in this process; the sklearn backend's loky workers are not counted);
* VSURF (R) with the same parameters, ``RFimplem="ranger"`` (ranger's own threads) and
  ``RFimplem="randomForest"`` (forked workers), if R, ranger and randomForest are
  installed and VSURF is or can be installed from ``--vendor`` (default: the repository
  root's ``../shared/vendor``); otherwise a line says why those columns are skipped;
* seed-to-seed stability: the mean pairwise Jaccard index of f_p1 and of f_pred over
  ``--seeds`` seeds of the fast preset, for both backends;
* with ``--paper``: the paper preset with the numba backend for ``--paper-seeds`` seeds
  (median time, Jaccard of f_p1/f_pred when more than one), and numba against VSURF-ranger
  at paper scale: the paper's parameters, with ``--paper-forests`` thresholding forests
  for both (default 50, the paper's; fewer keeps a run short on a loaded machine, every
  other parameter as the paper). The sklearn backend's paper preset (about 14 minutes)
  is not rerun: see BENCHMARKS.md.

Not a test: timings depend on the machine and its load, so nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from stemstore.analysis.selection import (
    PRESETS,
    RandomForestSelector,
    _column_ranks,
    _fit_bootstrap_tree,
    _forest_random_streams,
    _nb_forest,
    _resolve_max_features,
    _tree_permutation_importance,
    _tree_target,
)

REPO = Path(__file__).resolve().parent.parent


def make_synthetic(n_per_class=68, n_features=1812, seed=0):
    """Raw (0) vs stem (1) rows: 8 informative features of decreasing effect size,
    two near-copies of the strongest, the rest pure noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per_class)
    X = rng.normal(size=(y.size, n_features))
    shifts = np.array([1.5, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    X[:, : shifts.size] += np.outer(y, shifts)
    X[:, 8] = X[:, 0] + 0.2 * rng.normal(size=y.size)  # correlated copies of feature 0
    X[:, 9] = X[:, 0] + 0.2 * rng.normal(size=y.size)
    return X.astype(np.float32), y


def cpu_seconds():
    """CPU time of this process, all threads (user + system)."""
    times = os.times()
    return times.user + times.system


def per_tree(X, y, n_trees):
    """CPU ms per tree, one core: (sklearn fit + importance, numba fit + importance + votes)."""
    target = _tree_target(y.astype(np.float64))
    mtry = _resolve_max_features(1 / 3, X.shape[1])
    rng, tree_random_state = _forest_random_streams(np.random.SeedSequence(0))
    start = cpu_seconds()
    for _ in range(n_trees):
        tree, counts = _fit_bootstrap_tree(X, target, mtry, rng, tree_random_state)
        _tree_permutation_importance(tree, counts, X, y, rng)
    sklearn_ms = (cpu_seconds() - start) / n_trees * 1e3
    ranks, order, values = _column_ranks(X)
    start = cpu_seconds()
    _nb_forest(ranks, order, values, y.astype(np.int64), 2, n_trees, mtry, np.uint64(0), True)
    numba_ms = (cpu_seconds() - start) / n_trees * 1e3
    return sklearn_ms, numba_ms


class StepTimedSelector(RandomForestSelector):
    """The selector, with the wall time of each of its three steps in ``step_seconds``."""

    def _timed(self, step, method, *args):
        start = time.perf_counter()
        method(*args)
        self.step_seconds[step] = time.perf_counter() - start

    def fit(self, X, y):
        self.step_seconds = {}
        return super().fit(X, y)

    def _thresholding(self, *args):
        self._timed("thres", super()._thresholding, *args)

    def _interpretation(self, *args):
        self._timed("interp", super()._interpretation, *args)

    def _prediction(self, *args):
        self._timed("pred", super()._prediction, *args)


def fitted_result(selector, X, y):
    """Fit and time ``selector``: wall, CPU, wall per step and the three selections."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    selector.fit(X, y)
    return dict(
        wall=time.perf_counter() - wall,
        cpu=cpu_seconds() - cpu,
        steps=selector.step_seconds,
        f_p1=set(selector.f_p1_.tolist()),
        f_p2=set(selector.f_p2_.tolist()),
        f_pred=set(selector.f_pred_.tolist()),
    )


def run_selector(preset, X, y, n_jobs, seed, backend):
    selector = StepTimedSelector.from_preset(preset, random_state=seed, n_jobs=n_jobs, backend=backend)
    return fitted_result(selector, X, y)


def mean_jaccard(sets):
    """Mean Jaccard index |A & B| / |A | B| over all pairs of the sets."""
    pairs = list(itertools.combinations(sets, 2))
    return statistics.mean(len(a & b) / len(a | b) for a, b in pairs) if pairs else float("nan")


def describe(label, results):
    walls = [r["wall"] for r in results]
    cpus = [r["cpu"] for r in results]
    sizes = [(len(r["f_p1"]), len(r["f_p2"]), len(r["f_pred"])) for r in results]
    steps = [r["steps"] for r in results if r.get("steps")]
    per_step = (
        "; steps (median wall) "
        + ", ".join(f"{k} {statistics.median(st[k] for st in steps):.1f} s" for k in steps[0])
        if steps
        else ""
    )
    print(
        f"{label}: median {statistics.median(walls):7.1f} s wall, {statistics.median(cpus):7.1f} s CPU "
        f"(runs: {', '.join(f'{w:.1f}' for w in walls)}); |f_p1|,|f_p2|,|f_pred| = {sizes}{per_step}",
        flush=True,
    )
    return statistics.median(walls)


# -- VSURF (R) ------------------------------------------------------------------------

R_SCRIPT = r"""
suppressMessages({library(VSURF, lib.loc = c(Sys.getenv("BENCH_R_LIB"), .libPaths()))})
x <- as.matrix(read.csv(Sys.getenv("BENCH_X"), header = FALSE))
y <- factor(scan(Sys.getenv("BENCH_Y"), quiet = TRUE))
p <- as.numeric(strsplit(Sys.getenv("BENCH_PARAMS"), ",")[[1]])
implem <- Sys.getenv("BENCH_IMPLEM")
cores <- as.integer(Sys.getenv("BENCH_CORES"))
cluster <- if (implem == "ranger") "ranger" else "FORK"
set.seed(as.integer(Sys.getenv("BENCH_SEED")))
if (Sys.getenv("BENCH_STEP") == "thres") {
  t <- system.time(v <- VSURF_thres(x, y, mtry = floor(ncol(x) / 3), nfor.thres = p[1],
    ntree.thres = p[2], RFimplem = implem, parallel = TRUE, ncores = cores,
    clusterType = cluster, verbose = FALSE))
  v$varselect.interp <- v$varselect.pred <- integer(0)
} else {
  t <- system.time(v <- VSURF(x, y, mtry = floor(ncol(x) / 3),
    nfor.thres = p[1], ntree.thres = p[2], nfor.interp = p[3], ntree.interp = p[4],
    nfor.pred = p[5], ntree.pred = p[6], nsd = 0, nmj = 1,
    RFimplem = implem, parallel = TRUE, ncores = cores, clusterType = cluster, verbose = FALSE))
  s <- sapply(v$comput.times, as.numeric, units = "secs")  # thresholding, interpretation, prediction
  cat(sprintf("RESULT thres=%.2f interp=%.2f pred=%.2f\n", s[1], s[2], s[3]))
}
cat(sprintf("RESULT wall=%.2f cpu=%.2f\n", t[["elapsed"]],
            t[["user.self"]] + t[["sys.self"]] + t[["user.child"]] + t[["sys.child"]]))
cat("RESULT f_p1=", paste(v$varselect.thres - 1, collapse = " "), "\n", sep = "")
cat("RESULT f_p2=", paste(v$varselect.interp - 1, collapse = " "), "\n", sep = "")
cat("RESULT f_pred=", paste(v$varselect.pred - 1, collapse = " "), "\n", sep = "")
"""


def prepare_vsurf(vendor: Path, workdir: Path):
    """A library path where VSURF loads, or (None, reason) when it cannot."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None, "Rscript not found (apt-get install -y r-base-core)"
    for package in ("ranger", "randomForest", "rpart", "doParallel"):
        check = subprocess.run(
            [rscript, "-e", f"quit(status = !requireNamespace('{package}', quietly = TRUE))"],
            capture_output=True,
        )
        if check.returncode != 0:
            return None, f"R package {package} missing (apt-get install -y r-cran-{package.lower()})"
    check = subprocess.run(
        [rscript, "-e", "quit(status = !requireNamespace('VSURF', quietly = TRUE))"], capture_output=True
    )
    if check.returncode == 0:
        return "", None
    tarballs = sorted(vendor.glob("VSURF_*.tar.gz")) + sorted(vendor.glob("VSURF-*.tar.gz"))
    if not tarballs:
        return None, f"VSURF not installed and no VSURF source tarball in {vendor}"
    library = workdir / "rlib"
    library.mkdir(exist_ok=True)
    install = subprocess.run(
        ["R", "CMD", "INSTALL", f"--library={library}", str(tarballs[-1])], capture_output=True, text=True
    )
    if install.returncode != 0:
        return None, f"R CMD INSTALL {tarballs[-1].name} failed: {install.stderr.strip()[-300:]}"
    return str(library), None


def run_vsurf(library, workdir, implem, params, n_jobs, seed=0, step="all", timeout=None):
    """One VSURF run (``step="thres"``: its thresholding step alone); None if it timed out."""
    env = dict(
        os.environ,
        BENCH_R_LIB=library,
        BENCH_X=str(workdir / "X.csv"),
        BENCH_Y=str(workdir / "y.csv"),
        BENCH_PARAMS=",".join(str(v) for v in params),
        BENCH_IMPLEM=implem,
        BENCH_SEED=str(seed),
        BENCH_CORES=str(n_jobs),
        BENCH_STEP=step,
    )
    script = workdir / "vsurf.R"
    script.write_text(R_SCRIPT)
    # Its own process group, so that a time limit also stops the workers VSURF forks.
    process = subprocess.Popen(
        ["Rscript", str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-500:])
    out = dict(
        re.findall(
            r"(\w+)=([^=\n]*?)(?= \w+=|\n|$)",
            "\n".join(
                line[len("RESULT ") :] for line in done.stdout.splitlines() if line.startswith("RESULT ")
            ),
        )
    )
    result = {"wall": float(out["wall"]), "cpu": float(out["cpu"])}
    result["steps"] = {k: float(out[k]) for k in ("thres", "interp", "pred") if k in out}
    for key in ("f_p1", "f_p2", "f_pred"):
        result[key] = {int(v) for v in out[key].split()}
    return result


def vsurf_params(preset, n_forests=None):
    p = PRESETS[preset]
    return (
        n_forests or p["n_forests"],
        p["n_trees"],
        p["n_fits_interp"],
        p["n_trees_interp"],
        p["n_fits_pred"],
        p["n_trees_pred"],
    )


def ratios(label, ours, theirs):
    """Our medians over theirs, wall and CPU."""
    for name, runs in theirs.items():
        wall = statistics.median(r["wall"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        print(
            f"{label} vs {name}: wall {statistics.median(r['wall'] for r in ours) / wall:.2f}x, "
            f"CPU {statistics.median(r['cpu'] for r in ours) / cpu:.2f}x",
            flush=True,
        )


def stability(label, runs):
    print(
        f"  {label}: mean pairwise Jaccard f_p1 {mean_jaccard([r['f_p1'] for r in runs]):.2f}, "
        f"f_pred {mean_jaccard([r['f_pred'] for r in runs]):.2f}; "
        f"f_pred per seed {[sorted(r['f_pred']) for r in runs]}",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the fast preset per backend")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the fast preset for the Jaccard index")
    parser.add_argument("--trees", type=int, default=200, help="trees for the per-tree comparison")
    parser.add_argument("--paper", action="store_true", help="also the paper preset (minutes)")
    parser.add_argument("--paper-seeds", type=int, default=1, help="seeds of the paper preset (numba)")
    parser.add_argument(
        "--paper-forests",
        type=int,
        default=50,
        help="thresholding forests for the paper-scale comparison with VSURF-ranger (50 = the paper)",
    )
    parser.add_argument("--no-r", action="store_true", help="skip VSURF")
    parser.add_argument(
        "--vsurf-timeout", type=float, default=900, help="stop a whole VSURF run after this many seconds"
    )
    parser.add_argument("--no-fast", action="store_true", help="skip the fast preset and the seeds")
    parser.add_argument("--no-sklearn", action="store_true", help="skip the sklearn reference backend")
    parser.add_argument("--vendor", type=Path, default=REPO.parent / "shared" / "vendor")
    args = parser.parse_args()

    X, y = make_synthetic()
    print(
        f"matrix {X.shape[0]} x {X.shape[1]}, n_jobs={args.n_jobs}, "
        f"cpus={os.cpu_count()}, load average={os.getloadavg()[0]:.1f}",
        flush=True,
    )
    start = time.perf_counter()
    RandomForestSelector(n_forests=2, n_trees=2, n_fits_interp=1, n_fits_pred=1, min_class_count=1).fit(
        X[:, :20], y
    )
    print(f"numba: first fit in this process (compile or load cache): {time.perf_counter() - start:.1f} s")

    sklearn_ms, numba_ms = per_tree(X, y, args.trees)
    print(
        f"per tree, one core, 604 of 1812 features per split, with permutation importance: "
        f"sklearn {sklearn_ms:.2f} ms CPU, numba {numba_ms:.2f} ms CPU ({sklearn_ms / numba_ms:.1f}x)",
        flush=True,
    )

    backends = ["numba"] if args.no_sklearn else ["numba", "sklearn"]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        library, reason = (None, "--no-r") if args.no_r else prepare_vsurf(args.vendor, workdir)
        implems = [] if library is None else ["ranger", "randomForest"]
        if library is None:
            print(f"VSURF columns skipped: {reason}", flush=True)
        else:
            np.savetxt(workdir / "X.csv", X, delimiter=",", fmt="%.9g")
            np.savetxt(workdir / "y.csv", y, fmt="%d")

        runs = {name: [] for name in backends + [f"VSURF-{i}" for i in implems]}
        # VSURF's thresholding step alone: the same forests as ours, so comparable even when its
        # threshold comes out 0 and it keeps hundreds of features for the nested step (see
        # BENCHMARKS.md), which can keep a whole run going for hours.
        thresholding = {f"VSURF-{i}": [] for i in implems}
        for _ in range(0 if args.no_fast else args.repeats):  # interleaved, so that all see the same load
            for backend in backends:
                runs[backend].append(run_selector("fast", X, y, args.n_jobs, 0, backend))
                describe(f"  one run, fast preset, {backend}", runs[backend][-1:])
            for implem in implems:
                name = f"VSURF-{implem}"
                thresholding[name].append(
                    run_vsurf(library, workdir, implem, vsurf_params("fast"), args.n_jobs, step="thres")
                )
                describe(f"  one run, fast preset, thresholding step alone, {name}", thresholding[name][-1:])
                result = run_vsurf(
                    library, workdir, implem, vsurf_params("fast"), args.n_jobs, timeout=args.vsurf_timeout
                )
                if result is None:
                    print(f"  one run, fast preset, {name}: stopped after {args.vsurf_timeout} s", flush=True)
                else:
                    runs[name].append(result)
                    describe(f"  one run, fast preset, {name}", runs[name][-1:])
        for name, results in runs.items() if not args.no_fast else ():
            if results:
                describe(f"fast preset, {name:>18}", results)
        for backend in backends if not args.no_fast else ():
            ratios(
                f"fast preset, {backend}",
                runs[backend],
                {n: r for n, r in runs.items() if n != backend and r},
            )
            ours = statistics.median(r["steps"]["thres"] for r in runs[backend])
            for name, results in thresholding.items():
                theirs = statistics.median(r["wall"] for r in results)
                print(
                    f"fast preset, thresholding step, {backend} vs {name}: {ours:.1f} s vs {theirs:.1f} s "
                    f"wall, {ours / theirs:.2f}x",
                    flush=True,
                )

        if not args.no_fast:
            print(f"seed-to-seed stability, fast preset, seeds 0..{args.seeds - 1}:", flush=True)
        for backend in backends if not args.no_fast else ():
            seeded = runs[backend][:1] + [
                run_selector("fast", X, y, args.n_jobs, seed, backend) for seed in range(1, args.seeds)
            ]
            stability(backend, seeded)

        if args.paper:
            paper = [
                run_selector("paper", X, y, args.n_jobs, seed, "numba") for seed in range(args.paper_seeds)
            ]
            describe("paper preset, numba", paper)
            if args.paper_seeds > 1:
                stability(f"paper, numba, seeds 0..{args.paper_seeds - 1}", paper)
            if library is not None:
                label = "paper preset" if args.paper_forests == 50 else f"paper, {args.paper_forests} forests"
                ours = (
                    paper[:1]
                    if args.paper_forests == 50
                    else [run_selector_params(X, y, args.n_jobs, n_forests=args.paper_forests)]
                )
                theirs = run_vsurf(
                    library,
                    workdir,
                    "ranger",
                    vsurf_params("paper", args.paper_forests),
                    args.n_jobs,
                    timeout=args.vsurf_timeout,
                )
                describe(f"{label}, numba", ours)
                if theirs is None:
                    print(f"{label}, VSURF-ranger: stopped after {args.vsurf_timeout} s", flush=True)
                else:
                    describe(f"{label}, VSURF-ranger", [theirs])
                    ratios(f"{label}, numba", ours, {"VSURF-ranger": [theirs]})


def run_selector_params(X, y, n_jobs, **overrides):
    """The paper preset with overrides (numba backend, seed 0)."""
    selector = StepTimedSelector.from_preset("paper", random_state=0, n_jobs=n_jobs, **overrides)
    return fitted_result(selector, X, y)


if __name__ == "__main__":
    main()
