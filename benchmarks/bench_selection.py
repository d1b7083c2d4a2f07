"""Time the random-forest feature selection (stemstore.analysis.selection) by hand.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_selection.py [--paper] [--n-jobs 2]

Prints, on a synthetic 136 x 1812 matrix shaped like one instrument group (68 raw
and 68 stem segments, 1812 features of which a few carry the label):

* wall time of the "fast" preset (and of the "paper" preset with ``--paper``;
  that one takes several minutes);
* the speed-up of the permutation importance that evaluates only the features
  each tree splits on, over the naive one that permutes every feature for every
  tree, for one forest.

Not a test: timings depend on the machine and its load, so nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from stemstore.analysis.selection import (
    RandomForestSelector,
    _fit_bootstrap_tree,
    _forest_random_streams,
    _leaf_classes,
    _resolve_max_features,
    _tree_permutation_importance,
    _tree_target,
)


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


def time_selector(preset, X, y, n_jobs):
    selector = RandomForestSelector.from_preset(preset, random_state=0, n_jobs=n_jobs)
    start = time.perf_counter()
    selector.fit(X, y)
    wall = time.perf_counter() - start
    print(
        f"{preset:>5}: {wall:7.1f} s wall   |f_p1|={len(selector.f_p1_)} "
        f"|f_p2|={len(selector.f_p2_)} |f_pred|={len(selector.f_pred_)}  "
        f"f_pred={selector.f_pred_.tolist()}",
        flush=True,
    )
    return wall


def naive_tree_importance(tree, in_bag_counts, X, y, rng):
    """The straightforward way: permute each of the p columns in turn, predict."""
    oob_rows = np.flatnonzero(in_bag_counts == 0)
    X_oob, y_oob = X[oob_rows], y[oob_rows]
    classes = _leaf_classes(tree)
    base_error = np.mean(classes[tree.tree_.apply(X_oob)] != y_oob)
    importances = np.empty(X.shape[1])
    for feature in range(X.shape[1]):
        permuted = X_oob.copy()
        permuted[:, feature] = X_oob[rng.permutation(oob_rows.size), feature]
        importances[feature] = np.mean(classes[tree.tree_.apply(permuted)] != y_oob) - base_error
    return importances


def compare_importance(X, y, n_trees):
    """Seconds per tree: fitting, importance of used features only, naive importance."""
    target = _tree_target(y.astype(np.float64))
    mtry = _resolve_max_features(1 / 3, X.shape[1])
    rng, tree_random_state = _forest_random_streams(np.random.SeedSequence(0))
    fit_time = used_time = naive_time = 0.0
    for _ in range(n_trees):
        start = time.perf_counter()
        tree, counts = _fit_bootstrap_tree(X, target, mtry, rng, tree_random_state)
        fit_time += time.perf_counter() - start
        start = time.perf_counter()
        used, used_importance = _tree_permutation_importance(tree, counts, X, y, rng)
        used_time += time.perf_counter() - start
        start = time.perf_counter()
        naive = naive_tree_importance(tree, counts, X, y, rng)
        naive_time += time.perf_counter() - start
        unused = np.setdiff1d(np.arange(X.shape[1]), used)
        assert np.all(naive[unused] == 0.0), "a feature the tree does not use changed its error"
    return fit_time / n_trees, used_time / n_trees, naive_time / n_trees


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", action="store_true", help="also time the paper preset (minutes)")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--trees", type=int, default=30, help="trees for the importance comparison")
    args = parser.parse_args()

    X, y = make_synthetic()
    print(
        f"matrix {X.shape[0]} x {X.shape[1]}, n_jobs={args.n_jobs}, "
        f"cpus={os.cpu_count()}, load average={os.getloadavg()[0]:.1f}",
        flush=True,
    )

    fit, used, naive = compare_importance(X, y, args.trees)
    print(
        f"per tree: fit {fit * 1e3:.1f} ms, importance of used features {used * 1e3:.2f} ms, "
        f"naive importance of all {X.shape[1]} features {naive * 1e3:.0f} ms"
    )
    print(
        f"importance speed-up {naive / used:.0f}x; whole forest (fit + importance) "
        f"speed-up {(fit + naive) / (fit + used):.1f}x; one 2000-tree forest: "
        f"{2000 * (fit + used):.0f} s vs {2000 * (fit + naive):.0f} s on one core",
        flush=True,
    )

    time_selector("fast", X, y, args.n_jobs)
    if args.paper:
        time_selector("paper", X, y, args.n_jobs)


if __name__ == "__main__":
    main()
