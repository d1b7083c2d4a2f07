"""Feature selection with random forests: the three-step VSURF procedure.

This module implements the feature selection of docs/method.md, section 4: the procedure of
Genuer, Poggi and Tuleau-Malot ("Variable selection using random forests",
Pattern Recognition Letters 31, 2010), known from the R package VSURF, as a
scikit-learn selector:

1. **Thresholding.** ``n_forests`` random forests of ``n_trees`` trees give each
   feature a permutation importance (mean decrease of out-of-bag accuracy).
   Features whose mean importance over the forests exceeds a noise level
   estimated from the standard deviations of the importances are kept: ``f_p1``.
2. **Interpretation.** Nested forests on the top 1, 2, ..., ``|f_p1|`` features;
   the prefix with the smallest mean OOB error is kept: ``f_p2``.
3. **Prediction.** Ascending forests: starting from the most important feature
   of ``f_p2``, the next one is added only if it lowers the mean OOB error by more
   than ``TH_pred``: ``f_pred``.

The module is a pure library: numpy arrays or pandas DataFrames in, fitted
attributes out. The store saves the attributes; :mod:`stemstore.analysis.plots` draws
them.

Forests are built here rather than with :class:`~sklearn.ensemble.RandomForestClassifier`
because the procedure needs every tree's out-of-bag rows. Each tree is a Gini
CART tree grown to purity on a bootstrap sample that this module draws itself
(bootstrap counts used as weights), which is what ``randomForest`` in R does for
classification. Two backends grow them:

* ``"numba"`` (the default): one compiled call per forest, on the ranks of each
  column (:func:`_column_ranks`, :func:`_nb_forest`); about 3x faster per tree
  with 604 of 1812 features per split, and far faster for the small nested and
  ascending forests, whose cost in the reference backend is mostly overhead.
* ``"sklearn"``: the reference, :class:`~sklearn.tree.DecisionTreeRegressor` on
  class indicators, which makes exactly the Gini splits at a third of the
  per-tree overhead of a classifier (see :func:`_tree_target`).

Both make the same model of a tree (same splits for the same bootstrap and the
same candidate features, cuts at the midpoint between values, the same OOB
votes and importances); they draw their random numbers differently, so for one
seed they give different, equally distributed results (tests/test_selection.py
and benchmarks/bench_selection.py compare them). The backend is a constructor
parameter, so a stored run's parameters record it.

All randomness comes from :class:`numpy.random.SeedSequence` children keyed by
(step, model, forest), so results do not depend on ``n_jobs`` or on the order in
which joblib runs the tasks.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numba
import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn import config_context
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["RandomForestSelector", "PRESETS"]

# Step identifiers used as the first element of every SeedSequence spawn key.
_STEP_THRESHOLDING, _STEP_INTERPRETATION, _STEP_PREDICTION = 1, 2, 3

#: Named parameter sets. "paper" is the protocol of docs/method.md, section 4 (50
#: forests of 2000 trees, |F|/3 features per split, 50 fits per nested and
#: ascending model); the number of trees of the nested/ascending forests is not
#: given by the method and is ours: 200 (VSURF used randomForest's default, 500,
#: in its first releases and uses 100 since release 1.1). "fast" is for tests,
#: previews and interactive work: 10 forests of 200 trees, 10 fits of 50 trees per
#: nested/ascending model. Times on 136 x 1812 with two cores: BENCHMARKS.md.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        n_forests=50,
        n_trees=2000,
        max_features=1 / 3,
        n_fits_interp=50,
        n_trees_interp=200,
        n_fits_pred=50,
        n_trees_pred=200,
        max_features_nested="sqrt",
    ),
    "fast": dict(
        n_forests=10,
        n_trees=200,
        max_features=1 / 3,
        n_fits_interp=10,
        n_trees_interp=50,
        n_fits_pred=10,
        n_trees_pred=50,
        max_features_nested="sqrt",
    ),
}


# ---------------------------------------------------------------------------
# Building blocks (module level so that joblib can send them to worker processes)
# ---------------------------------------------------------------------------


def _resolve_max_features(max_features, n_features: int) -> int:
    """Number of features tried at each split, as randomForest's ``mtry``.

    ``float`` in (0, 1]: that fraction of the features, rounded down (1/3 of 1812 is
    604, as ``floor(p/3)`` in R); ``int``: that many; ``"sqrt"``/``"log2"``:
    ``floor(sqrt(p))``/``floor(log2(p))``; callable: ``max_features(p)``; ``None``:
    all. Always at least 1 and at most ``n_features``.
    """
    if max_features is None:
        value = n_features
    elif callable(max_features):
        value = int(max_features(n_features))
    elif isinstance(max_features, str):
        if max_features == "sqrt":
            value = int(math.floor(math.sqrt(n_features)))
        elif max_features == "log2":
            value = int(math.floor(math.log2(n_features)))
        else:
            raise ValueError(
                f"max_features={max_features!r}: use 'sqrt', 'log2', a float fraction, "
                "an int, a callable or None"
            )
    elif isinstance(max_features, numbers.Integral) and not isinstance(max_features, bool):
        value = int(max_features)
    elif isinstance(max_features, numbers.Real):
        if not 0.0 < max_features <= 1.0:
            raise ValueError(f"max_features={max_features}: a float must lie in (0, 1]")
        # The small epsilon makes 1812 * (1/3) give 604, not 603.
        value = int(math.floor(max_features * n_features + 1e-9))
    else:
        raise ValueError(f"max_features={max_features!r} is not understood")
    return max(1, min(value, n_features))


def _tree_target(y: np.ndarray) -> np.ndarray:
    """Regression target whose squared-error splits are exactly Gini splits.

    For class codes 0..C-1, the squared error of the one-hot indicator columns
    summed over the columns is the Gini impurity, so a regression tree on them
    makes the same splits as a Gini classification tree (scikit-learn's
    multi-output criterion averages over the C columns: the same ranking of
    splits). With two classes the 0/1 code alone suffices (Gini = 2 x variance).
    A :class:`~sklearn.tree.DecisionTreeRegressor` is used because
    ``DecisionTreeClassifier.fit`` spends ~1 ms per call re-checking the targets,
    more than growing a small tree takes.
    """
    n_classes = int(y.max()) + 1
    if n_classes == 2:
        return np.ascontiguousarray(y, dtype=np.float64)
    return np.ascontiguousarray(np.eye(n_classes)[y.astype(np.intp)])


def _fit_bootstrap_tree(
    X, target, max_features: int, rng: np.random.Generator, tree_random_state: np.random.RandomState
):
    """Grow one fully developed CART (Gini) tree on a bootstrap sample.

    Returns the tree and the number of times each row was drawn (0 = out of bag).
    ``X`` must be float32, ``target`` from :func:`_tree_target`. ``rng`` draws the
    bootstrap; ``tree_random_state`` (shared by the trees of one forest, because
    seeding a new RandomState per tree costs more than a small tree) seeds the
    tree's feature sampling. The bootstrap is n
    rows drawn with replacement, passed as sample weights (equivalent to
    repeating the rows, and cheaper); trees grow until leaves are pure, as
    ``randomForest`` does for classification (nodesize = 1).
    """
    n_samples = X.shape[0]
    in_bag_counts = np.bincount(rng.integers(0, n_samples, n_samples), minlength=n_samples)
    tree = DecisionTreeRegressor(max_features=max_features, random_state=tree_random_state)
    tree.fit(X, target, sample_weight=in_bag_counts.astype(np.float64), check_input=False)
    return tree, in_bag_counts


def _forest_random_streams(seed: np.random.SeedSequence):
    """The two random streams of one forest: bootstraps/permutations, tree splits."""
    bootstrap_seed, tree_seed = seed.spawn(2)
    return (np.random.default_rng(bootstrap_seed), np.random.RandomState(np.random.MT19937(tree_seed)))


def _leaf_classes(tree) -> np.ndarray:
    """Class index predicted at every node of a tree from :func:`_fit_bootstrap_tree`."""
    value = tree.tree_.value[:, :, 0]  # (n_nodes, n_outputs): class fractions
    if value.shape[1] == 1:  # two classes, 0/1 target: fraction of class 1
        return (value[:, 0] > 0.5).astype(np.intp)
    return np.argmax(value, axis=1)


def _predict_local(tree, local_feature, X_local) -> np.ndarray:
    """Predict class indices by walking the tree in numpy, level by level.

    ``X_local`` has shape (..., n_used): only the columns the tree splits on, and
    ``local_feature[node]`` says which of them node splits on (-1 at leaves). All
    leading dimensions (permuted copies x rows) are walked at once, so a tree costs
    ``max_depth`` vectorised steps instead of one ``predict`` call per feature.
    Comparisons are ``x <= threshold`` in float64, as in scikit-learn.
    """
    structure = tree.tree_
    left, right, threshold = structure.children_left, structure.children_right, structure.threshold
    node = np.zeros(X_local.shape[:-1], dtype=np.intp)
    for _ in range(structure.max_depth):
        feature = local_feature[node]
        is_split = feature >= 0
        value = np.take_along_axis(X_local, np.maximum(feature, 0)[..., None], axis=-1)[..., 0]
        child = np.where(value <= threshold[node], left[node], right[node])
        node = np.where(is_split, child, node)
    return _leaf_classes(tree)[node]


def _tree_permutation_importance(tree, in_bag_counts, X, y, rng) -> tuple[np.ndarray, np.ndarray]:
    """OOB permutation importance of the features one tree splits on.

    Returns ``(features, importances)``: the column indices the tree uses and, for
    each, (OOB error with that column permuted among the OOB rows) - (OOB error).
    A feature the tree never splits on cannot change its predictions, so its
    importance in this tree is exactly 0 and it is not evaluated at all.
    """
    oob_rows = np.flatnonzero(in_bag_counts == 0)
    split_features = tree.tree_.feature
    used = np.unique(split_features[split_features >= 0])
    if oob_rows.size == 0 or used.size == 0:
        return used, np.zeros(used.size)
    # Node -> position of its split feature among the used columns (-1 = leaf).
    local_feature = np.where(split_features >= 0, np.searchsorted(used, split_features), -1)

    X_oob = X[np.ix_(oob_rows, used)]  # (n_oob, n_used)
    n_oob, n_used = X_oob.shape
    # Copy 0 is the data as is; copy k+1 has column k permuted among the OOB rows.
    copies = np.broadcast_to(X_oob, (n_used + 1, n_oob, n_used)).copy()
    permutations = rng.permuted(np.broadcast_to(np.arange(n_oob), (n_used, n_oob)), axis=1)
    columns = np.arange(n_used)
    copies[columns + 1, :, columns] = X_oob[permutations, columns[:, None]]

    predicted = _predict_local(tree, local_feature, copies)  # (n_used + 1, n_oob)
    errors = (predicted != y[oob_rows]).mean(axis=1)
    return used, errors[1:] - errors[0]


def _forest_importances(X, y, n_trees: int, max_features: int, seed) -> tuple[np.ndarray, float]:
    """Permutation importance of every feature in one forest, and its OOB error.

    Importance of feature p = mean over the ``n_trees`` trees of that tree's
    importance of p (0 in trees that do not split on p), as ``randomForest``'s
    unscaled ``MeanDecreaseAccuracy``.
    """
    rng, tree_random_state = _forest_random_streams(seed)
    target = _tree_target(y)
    total = np.zeros(X.shape[1])
    votes = np.zeros((X.shape[0], int(y.max()) + 1))
    with config_context(skip_parameter_validation=True):  # saves ~20% per small tree
        for _ in range(n_trees):
            tree, in_bag_counts = _fit_bootstrap_tree(X, target, max_features, rng, tree_random_state)
            used, importances = _tree_permutation_importance(tree, in_bag_counts, X, y, rng)
            total[used] += importances
            _add_oob_votes(votes, tree, in_bag_counts, X)
    return total / n_trees, _vote_error(votes, y)


def _add_oob_votes(votes, tree, in_bag_counts, X) -> None:
    """Add one tree's predictions for its out-of-bag rows to the vote counts."""
    oob_rows = np.flatnonzero(in_bag_counts == 0)
    predicted = _leaf_classes(tree)[tree.tree_.apply(X[oob_rows])]
    votes[oob_rows, predicted] += 1  # each row at most once per tree: no add.at needed


def _vote_error(votes: np.ndarray, y: np.ndarray) -> float:
    """OOB misclassification rate of a forest from its out-of-bag vote counts.

    Rows that were never out of bag are left out, as in ``randomForest``. A tie
    among the top-voted classes counts as the probability of a random tie-break
    being wrong (``randomForest`` breaks ties at random), which keeps the result
    deterministic.
    """
    voted = votes.sum(axis=1) > 0
    if not voted.any():
        return float("nan")
    votes, y = votes[voted], y[voted].astype(np.intp)
    top = votes.max(axis=1, keepdims=True)
    n_tied = (votes == top).sum(axis=1)
    true_is_top = votes[np.arange(y.size), y] == top[:, 0]
    errors = np.where(true_is_top, 1.0 - 1.0 / n_tied, 1.0)
    return float(errors.mean())


def _forest_oob_error(X, y, columns, n_trees: int, max_features, seed) -> float:
    """OOB error of one forest grown on the given columns of ``X``."""
    rng, tree_random_state = _forest_random_streams(seed)
    X_sub = np.ascontiguousarray(X[:, columns])
    mtry = _resolve_max_features(max_features, X_sub.shape[1])
    target = _tree_target(y)
    votes = np.zeros((X.shape[0], int(y.max()) + 1))
    with config_context(skip_parameter_validation=True):
        for _ in range(n_trees):
            tree, in_bag_counts = _fit_bootstrap_tree(X_sub, target, mtry, rng, tree_random_state)
            _add_oob_votes(votes, tree, in_bag_counts, X_sub)
    return _vote_error(votes, y)


# ---------------------------------------------------------------------------
# The compiled backend ("numba"): the same forests, grown on ranks in one loop
# ---------------------------------------------------------------------------
#
# Every prediction the procedure makes is for a row of X itself (out-of-bag rows,
# or out-of-bag rows with one column permuted among them), so a tree never needs
# the feature values, only their order: each column is replaced once per fit by
# the dense ranks of its (float32) values, <= n_samples distinct levels. A node's
# best split on a feature is then found from a per-level histogram of the class
# weights instead of a sort, and a split is "rank <= r". One compiled call grows
# a whole forest, computes the permutation importance of the features each tree
# uses and counts the out-of-bag votes, without returning to Python per tree
# (scikit-learn's per-tree overhead alone is ~0.3 ms, more than such a tree costs).
#
# The randomness is a splitmix64 stream per forest seeded from the forest's
# SeedSequence: results depend on the seed only, not on n_jobs or on threads.

_NB_INCREMENT = np.uint64(0x9E3779B97F4A7C15)
_NB_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_NB_MIX2 = np.uint64(0x94D049BB133111EB)
_NB_INV_2_53 = 1.0 / 9007199254740992.0
# The index of a 64-bit word's only set bit, by de Bruijn multiplication (no loop, no branch).
_NB_ONE = np.uint64(1)
_NB_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_NB_BIT_INDEX = np.zeros(64, np.int64)
for _bit in range(64):
    _NB_BIT_INDEX[((1 << _bit) * 0x03F79D71B4CB0A89 % 2**64) >> 58] = _bit


@numba.njit(cache=True, nogil=True)
def _nb_below(state, n):
    """Uniform integer in [0, n) from the splitmix64 state ``state[0]`` (advanced)."""
    state[0] += _NB_INCREMENT
    z = state[0]
    z = (z ^ (z >> np.uint64(30))) * _NB_MIX1
    z = (z ^ (z >> np.uint64(27))) * _NB_MIX2
    z = z ^ (z >> np.uint64(31))
    # The top 53 bits as a float in [0, 1): the bias for n <= 2**20 is < 1e-9.
    return np.int64(np.float64(z >> np.uint64(11)) * _NB_INV_2_53 * n)


@numba.njit(cache=True, nogil=True, inline="always")
def _nb_split_score(l0, l1, r0, r1, inverse):
    """A two-class split's score, sum_c L_c^2 / L + sum_c R_c^2 / R, from its integer class
    weights left (l0, l1) and right (r0, r1); ``inverse[w]`` is 1 / w."""
    return (l0 * l0 + l1 * l1) * inverse[l0 + l1] + (r0 * r0 + r1 * r1) * inverse[r0 + r1]


@numba.njit(cache=True, nogil=True)
def _nb_forest(ranks, order, values, y, n_classes, n_trees, mtry, seed, with_importance, sparse_spread=2):
    """Grow one forest on ``ranks`` (n_features, n_samples); importances and OOB votes.

    Each tree: a bootstrap of n rows (counts used as weights), Gini splits over
    ``mtry`` features drawn per node without replacement (and more, one at a
    time, while all drawn are constant in the node), grown until its leaves are pure (or hold one distinct
    row). Returns ``(importance, votes)``: the mean over the trees of each
    feature's OOB permutation importance (0 where a tree does not split on it;
    all zeros when ``with_importance`` is False) and the (n_samples, n_classes)
    OOB vote counts. ``sparse_spread`` only chooses how a two-class node's split is
    searched (see below), never which split is found.
    """
    p, n = ranks.shape
    state = np.empty(1, np.uint64)
    state[0] = seed
    importance = np.zeros(p)
    votes = np.zeros((n, n_classes))

    max_nodes = 2 * n + 1  # each leaf holds >= 1 distinct row
    feature = np.empty(max_nodes, np.int64)
    threshold = np.empty(max_nodes, np.int64)
    left = np.empty(max_nodes, np.int64)
    leaf_class = np.empty(max_nodes, np.int64)
    stack_node = np.empty(max_nodes, np.int64)
    stack_start = np.empty(max_nodes, np.int64)
    stack_end = np.empty(max_nodes, np.int64)

    counts = np.empty(n, np.int64)
    row_w = np.zeros(n)  # a row's bootstrap count while its node is split, else 0
    rows = np.empty(n, np.int64)  # the in-bag rows, partitioned node by node
    order_rank = np.empty(n, np.int64)  # scratch for small nodes: ranks sorted
    order_row = np.empty(n, np.int64)
    features = np.arange(p)
    n_levels = n  # ranks lie in [0, n)
    hist = np.zeros((n_levels, n_classes))
    level_w = np.zeros(n_levels)
    level2 = np.zeros(2 * n_levels, np.int64)  # two classes: weights of (level, class)
    present = np.zeros(n_levels // 64 + 1, np.uint64)  # two classes: bitmap of a node's levels
    node_count = np.zeros(2, np.int64)
    inverse = np.zeros(n + 1)
    inverse[1:] = 1.0 / np.arange(1, n + 1)
    node_w = np.zeros(n_classes)
    left_w = np.zeros(n_classes)
    oob = np.empty(n, np.int64)
    shuffled = np.empty(n, np.int64)
    base_pred = np.empty(n, np.int64)
    is_used = np.zeros(p, np.bool_)
    used = np.empty(p, np.int64)

    for _ in range(n_trees):
        counts[:] = 0
        for _i in range(n):
            counts[_nb_below(state, n)] += 1
        n_in = 0
        for i in range(n):
            if counts[i] > 0:
                rows[n_in] = i
                n_in += 1

        n_nodes = 1
        stack_node[0], stack_start[0], stack_end[0] = 0, 0, n_in
        top = 1
        while top > 0:
            top -= 1
            node, start, end = stack_node[top], stack_start[top], stack_end[top]
            node_w[:] = 0.0
            for k in range(start, end):
                node_w[y[rows[k]]] += counts[rows[k]]
                row_w[rows[k]] = counts[rows[k]]
            if n_classes == 2:
                node_count[0], node_count[1] = np.int64(node_w[0]), np.int64(node_w[1])
            majority, n_present, total_w = 0, 0, 0.0
            for c in range(n_classes):
                total_w += node_w[c]
                if node_w[c] > 0:
                    n_present += 1
                if node_w[c] > node_w[majority]:
                    majority = c
            leaf_class[node] = majority
            feature[node] = -1
            if n_present < 2 or end - start < 2:
                for k in range(start, end):
                    row_w[rows[k]] = 0.0
                continue

            # Best split: maximise sum_c L_c^2 / L + sum_c R_c^2 / R (= least weighted Gini).
            best_proxy, best_feature, best_threshold = -1.0, -1, -1
            n_drawn = 0
            size = end - start
            # As scikit-learn: mtry features are drawn, constant ones included, but
            # drawing goes on until one that is not constant in the node is found.
            while n_drawn < p and (n_drawn < mtry or best_feature < 0):
                j = n_drawn + _nb_below(state, p - n_drawn)  # partial Fisher-Yates
                f = features[j]
                features[j] = features[n_drawn]
                features[n_drawn] = f
                n_drawn += 1
                if n_classes == 2:
                    # The common case, with few data-dependent branches (mispredicted
                    # branches, not arithmetic, are what a 136-row node costs):
                    # class weights per level, then every split "rank <= b" for b in
                    # [low, high). An empty level b repeats the split at the level
                    # before it, with the same score, so it never wins; a node with
                    # few rows for its range of levels (most nodes deep in a tree)
                    # skips the empty levels through a bitmap of the levels it holds.
                    # Both ways try the same splits in the same order.
                    low, high = n, -1
                    for k in range(start, end):
                        row = rows[k]
                        r = np.int64(ranks[f, row])
                        level2[2 * r + y[row]] += counts[row]
                        present[r >> 6] |= _NB_ONE << np.uint64(r & 63)
                        low = min(low, r)
                        high = max(high, r)
                    if low < high:
                        # Weights are bootstrap counts, so sums are exact integers
                        # and 1/w comes from a table: no division in the loop.
                        l0, l1 = 0, 0
                        w0, w1 = node_count[0], node_count[1]
                        if high - low > sparse_spread * size:  # the bitmap's set bits, in order
                            for word_index in range(low >> 6, (high >> 6) + 1):
                                word = present[word_index]
                                while word:
                                    lowest = word & (~word + _NB_ONE)
                                    word ^= lowest
                                    b = (word_index << 6) + _NB_BIT_INDEX[
                                        (lowest * _NB_DEBRUIJN) >> np.uint64(58)
                                    ]
                                    if b >= high:
                                        break
                                    l0 += level2[2 * b]
                                    l1 += level2[2 * b + 1]
                                    proxy = _nb_split_score(l0, l1, w0 - l0, w1 - l1, inverse)
                                    if proxy > best_proxy:
                                        best_proxy, best_feature, best_threshold = proxy, f, b
                        else:
                            for b in range(low, high):
                                l0 += level2[2 * b]
                                l1 += level2[2 * b + 1]
                                proxy = _nb_split_score(l0, l1, w0 - l0, w1 - l1, inverse)
                                if proxy > best_proxy:
                                    best_proxy, best_feature, best_threshold = proxy, f, b
                    for word_index in range(low >> 6, (high >> 6) + 1):
                        present[word_index] = 0
                    for k in range(start, end):
                        r = np.int64(ranks[f, rows[k]])
                        level2[2 * r] = 0
                        level2[2 * r + 1] = 0
                    continue
                left_w[:] = 0.0
                lw = 0.0
                if 3 * size >= n:
                    # A large node: walk the column's precomputed sort order once,
                    # skipping rows outside the node (row_w = 0); a split is tried
                    # where the rank changes (nowhere if constant in the node).
                    previous = -1
                    for k in range(n):
                        row = order[f, k]
                        w = row_w[row]
                        if w == 0.0:
                            continue
                        r = ranks[f, row]
                        if r != previous:
                            if lw > 0.0:  # the split "rank <= previous"
                                sl, sr = 0.0, 0.0
                                for c in range(n_classes):
                                    sl += left_w[c] * left_w[c]
                                    sr += (node_w[c] - left_w[c]) * (node_w[c] - left_w[c])
                                proxy = sl / lw + sr / (total_w - lw)
                                if proxy > best_proxy:
                                    best_proxy, best_feature, best_threshold = proxy, f, previous
                            previous = r
                        left_w[y[row]] += w
                        lw += w
                    continue
                low = high = ranks[f, rows[start]]
                for k in range(start + 1, end):
                    r = ranks[f, rows[k]]
                    if r < low:
                        low = r
                    elif r > high:
                        high = r
                if low == high:  # constant in this node
                    continue
                if high - low < 4 * size:
                    # Class weights per level, scanned in rank order; only the levels
                    # present in the node are touched, and reset afterwards.
                    for k in range(start, end):
                        r = ranks[f, rows[k]]
                        hist[r, y[rows[k]]] += counts[rows[k]]
                        level_w[r] += counts[rows[k]]
                    for b in range(low, high):  # the split "rank <= b"
                        bw = level_w[b]
                        if bw == 0.0:
                            continue
                        lw += bw
                        sl, sr = 0.0, 0.0
                        for c in range(n_classes):
                            left_w[c] += hist[b, c]
                            sl += left_w[c] * left_w[c]
                            sr += (node_w[c] - left_w[c]) * (node_w[c] - left_w[c])
                        proxy = sl / lw + sr / (total_w - lw)
                        if proxy > best_proxy:
                            best_proxy, best_feature, best_threshold = proxy, f, b
                    for k in range(start, end):
                        r = ranks[f, rows[k]]
                        level_w[r] = 0.0
                        for c in range(n_classes):
                            hist[r, c] = 0.0
                else:
                    # Few rows spread over many levels: insertion-sort them instead.
                    for k in range(size):
                        r = ranks[f, rows[start + k]]
                        row = rows[start + k]
                        m = k
                        while m > 0 and order_rank[m - 1] > r:
                            order_rank[m] = order_rank[m - 1]
                            order_row[m] = order_row[m - 1]
                            m -= 1
                        order_rank[m] = r
                        order_row[m] = row
                    for k in range(size - 1):
                        row = order_row[k]
                        left_w[y[row]] += counts[row]
                        lw += counts[row]
                        if order_rank[k + 1] == order_rank[k]:
                            continue
                        sl, sr = 0.0, 0.0
                        for c in range(n_classes):
                            sl += left_w[c] * left_w[c]
                            sr += (node_w[c] - left_w[c]) * (node_w[c] - left_w[c])
                        proxy = sl / lw + sr / (total_w - lw)
                        if proxy > best_proxy:
                            best_proxy, best_feature, best_threshold = proxy, f, order_rank[k]
            for k in range(start, end):
                row_w[rows[k]] = 0.0
            if best_feature < 0:  # every feature constant in the node
                continue

            # Partition the node's rows: rank <= threshold to the left.
            k, stop = start, end
            while k < stop:
                if ranks[best_feature, rows[k]] <= best_threshold:
                    k += 1
                else:
                    stop -= 1
                    rows[k], rows[stop] = rows[stop], rows[k]
            # Where an out-of-bag row goes: like scikit-learn and randomForest, the
            # cut is the midpoint between the two values either side of the split,
            # so "rank <= b" becomes "rank <= the last level below the midpoint".
            next_level = n
            for m in range(k, end):
                next_level = min(next_level, np.int64(ranks[best_feature, rows[m]]))
            midpoint = values[best_feature, best_threshold] / 2.0 + values[best_feature, next_level] / 2.0
            if midpoint == values[best_feature, next_level]:  # rounding: as scikit-learn
                midpoint = values[best_feature, best_threshold]
            cut = best_threshold
            while cut + 1 < next_level and values[best_feature, cut + 1] <= midpoint:
                cut += 1
            feature[node], threshold[node], left[node] = best_feature, cut, n_nodes
            # Right child = left + 1. Push right first so the left subtree is grown first.
            stack_node[top], stack_start[top], stack_end[top] = n_nodes + 1, k, end
            stack_node[top + 1], stack_start[top + 1], stack_end[top + 1] = n_nodes, start, k
            top += 2
            n_nodes += 2

        # Out-of-bag votes.
        n_oob = 0
        for i in range(n):
            if counts[i] == 0:
                oob[n_oob] = i
                n_oob += 1
        if n_oob == 0:
            continue
        base_errors = 0
        for k in range(n_oob):
            node = 0
            while feature[node] >= 0:
                f = feature[node]
                node = left[node] if ranks[f, oob[k]] <= threshold[node] else left[node] + 1
            base_pred[k] = leaf_class[node]
            votes[oob[k], leaf_class[node]] += 1.0
            if leaf_class[node] != y[oob[k]]:
                base_errors += 1
        if not with_importance:
            continue

        # Permutation importance of the features this tree splits on (exactly 0 for
        # the others), in node order; each gets its own shuffle of the OOB rows.
        n_used = 0
        for node in range(n_nodes):
            f = feature[node]
            if f >= 0 and not is_used[f]:
                is_used[f] = True
                used[n_used] = f
                n_used += 1
        for u in range(n_used):
            g = used[u]
            is_used[g] = False
            for k in range(n_oob):
                shuffled[k] = oob[k]
            for k in range(n_oob - 1, 0, -1):
                m = _nb_below(state, k + 1)
                shuffled[k], shuffled[m] = shuffled[m], shuffled[k]
            errors = 0
            for k in range(n_oob):
                node = 0
                while feature[node] >= 0:
                    f = feature[node]
                    row = shuffled[k] if f == g else oob[k]
                    node = left[node] if ranks[f, row] <= threshold[node] else left[node] + 1
                if leaf_class[node] != y[oob[k]]:
                    errors += 1
            importance[g] += (errors - base_errors) / n_oob
    return importance / n_trees, votes


class _RankedData(NamedTuple):
    """What the compiled backend grows its forests on (see :func:`_column_ranks`)."""

    ranks: np.ndarray
    order: np.ndarray
    values: np.ndarray
    y: np.ndarray  # class codes as int64
    n_classes: int


def _column_ranks(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense ranks of every column, each column's sort order and its distinct values.

    Returns ``(ranks, order, values)``, each C-ordered of shape (n_features,
    n_samples): ``ranks[j, i]`` is the rank of ``X[i, j]`` among the distinct
    values of column j (equal float32 values share a rank, so no split separates
    them, exactly as with the values themselves); ``order[j]`` lists the rows by
    increasing value; ``values[j, r]`` is the value of rank r (float64, padded
    with +inf), used only to place a split's cut at the midpoint. Small integer
    types keep the ranks of a 136 x 1812 matrix in the CPU's cache.
    """
    n_samples, n_features = X.shape
    rank_type = np.int16 if n_samples <= np.iinfo(np.int16).max else np.int32
    ranks = np.empty((n_features, n_samples), dtype=rank_type)
    values = np.full((n_features, n_samples), np.inf)
    for j in range(n_features):
        distinct, inverse = np.unique(X[:, j], return_inverse=True)
        ranks[j] = inverse.ravel()
        values[j, : distinct.size] = distinct
    order = np.ascontiguousarray(np.argsort(ranks, axis=1, kind="stable").astype(np.int32))
    return ranks, order, values


def _nb_seed(seed: np.random.SeedSequence) -> np.uint64:
    """The 64-bit start of a forest's splitmix64 stream, from its SeedSequence."""
    return seed.generate_state(1, np.uint64)[0]


def _nb_forest_importances(ranked, y_int, n_classes, n_trees, mtry, seed) -> tuple[np.ndarray, float]:
    """Compiled counterpart of :func:`_forest_importances`: (importances, OOB error).

    ``ranked`` is ``(ranks, order)`` from :func:`_column_ranks`.
    """
    ranks, order, values = ranked
    importance, votes = _nb_forest(
        ranks, order, values, y_int, n_classes, n_trees, mtry, _nb_seed(seed), True
    )
    return importance, _vote_error(votes, y_int)


def _nb_oob_errors(ranked, y_int, n_classes, n_trees, max_features, seeds) -> list[float]:
    """OOB errors of one forest per seed, all grown on the columns of ``ranked``.

    One call serves all the fits of a nested or ascending model, so a worker task
    grows many small forests (fast ones: ~1 ms each) instead of one.
    """
    ranks, order, values = ranked
    mtry = _resolve_max_features(max_features, ranks.shape[0])
    errors = []
    for seed in seeds:
        _, votes = _nb_forest(ranks, order, values, y_int, n_classes, n_trees, mtry, _nb_seed(seed), False)
        errors.append(_vote_error(votes, y_int))
    return errors


def _importance_threshold(sd_by_rank: np.ndarray, min_samples_split, min_samples_leaf, cp):
    """Fit a CART regression tree to the importance sds as a function of rank.

    Returns ``(threshold, predictions)``: the smallest predicted value (the level of
    the lowest "stair", an estimate of the sd of a pure-noise importance) and the
    tree's prediction at every rank.
    """
    ranks = np.arange(1, sd_by_rank.size + 1, dtype=float)[:, None]
    # rpart's complexity parameter cp: a split must reduce the total sum of
    # squares by cp x (root sum of squares), i.e. the size-weighted impurity
    # decrease scikit-learn tests must be at least cp x variance.
    cart = DecisionTreeRegressor(
        min_samples_split=min_samples_split,
        min_samples_leaf=min_samples_leaf,
        min_impurity_decrease=cp * float(np.var(sd_by_rank)),
        random_state=0,
    )
    cart.fit(ranks, sd_by_rank)
    predictions = cart.predict(ranks)
    return float(predictions.min()), predictions


# ---------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------


class RandomForestSelector(SelectorMixin, BaseEstimator):
    """Select features with random forests (VSURF: threshold, interpret, predict).

    The three steps of Genuer, Poggi and Tuleau-Malot (2010), docs/method.md, section 4.
    ``get_support()`` / ``transform`` keep ``f_pred``, the prediction set; ``f_p1``
    and ``f_p2`` are fitted attributes. Works as a step of a
    :class:`~sklearn.pipeline.Pipeline`. The defaults are the "paper" preset; use
    ``RandomForestSelector.from_preset("fast")`` for quick runs.

    Parameters
    ----------
    n_forests : int, default=50
        Forests of the thresholding step; importances are averaged over them and
        their standard deviation estimates the noise level.
    n_trees : int, default=2000
        Trees per thresholding forest.
    max_features : float, int, {"sqrt", "log2"}, callable or None, default=1/3
        Features tried at each split in the thresholding forests. A float is a
        fraction of the features rounded down (1/3 of 1812 = 604, the paper's
        |F|/3), an int a count, a callable maps the number of features to a count.
    n_fits_interp : int, default=50
        Forests fitted per nested model of the interpretation step.
    n_trees_interp : int, default=200
        Trees per nested forest (not fixed by the method; our choice, see PRESETS).
    n_fits_pred : int, default=50
        Forests fitted per model of the prediction (ascending) step.
    n_trees_pred : int, default=200
        Trees per ascending forest.
    max_features_nested : same types as ``max_features``, default="sqrt"
        Features tried per split in nested and ascending forests, resolved for the
        model's own number of features. "sqrt" is randomForest's classification
        default, which VSURF uses there.
    threshold_multiplier : float, default=1.0
        VSURF's ``nmin``: keep features whose mean importance exceeds
        ``threshold_multiplier`` x the lowest CART prediction.
    n_sd_interp : float, default=0.0
        VSURF's ``nsd``: f_p2 is the smallest nested model whose mean OOB error is
        at most (minimum mean error + ``n_sd_interp`` x sd of that minimum model).
        0 keeps the prefix with the smallest mean error (docs/method.md, section 4); VSURF's
        default is 1.
    n_mean_jumps_pred : float, default=1.0
        VSURF's ``nmj``: a feature joins the ascending model if it lowers the mean
        OOB error by more than ``n_mean_jumps_pred`` x TH_pred.
    max_interp_features : int or None, default=None
        Optional cap on the number of thresholded features the nested step walks
        through (the cost of step 2 grows with |f_p1|). None: no cap, as VSURF.
    cart_min_samples_split, cart_min_samples_leaf, cart_cp : int, int, float, default=20, 7, 0.01
        Settings of the regression tree fitted to the importance sds; they are
        rpart's defaults (minsplit, minbucket, cp), see Notes.
    min_class_count : int, default=10
        Fewer rows than this in any class raise a ValueError: importances and OOB
        errors are meaningless on a handful of rows.
    backend : {"numba", "sklearn"}, default="numba"
        How the forests are grown: "numba", compiled (threads, fast); "sklearn",
        the reference, scikit-learn trees in worker processes (about 3x slower at
        paper scale). Same procedure and same distribution of results; the
        random draws differ, so one seed gives different results on each (see
        Notes).
    n_jobs : int or None, default=None
        Parallel jobs (joblib) over forests: threads with the "numba" backend,
        processes with "sklearn". None means 1, -1 all cores.
    random_state : int, RandomState instance or None, default=None
        Seed of everything random. The same int gives bit-identical results for
        any ``n_jobs``.
    verbose : int, default=0
        joblib verbosity.

    Attributes
    ----------
    n_features_in_ : int
    feature_names_in_ : ndarray of str, only when fitted on a DataFrame with string column names.
    classes_ : ndarray, the class labels in code order.
    importances_ : ndarray of shape (n_forests, n_features_in_)
        Importance of every feature in every thresholding forest.
    importances_mean_, importances_std_ : ndarray of shape (n_features_in_,)
        Mean and standard deviation (ddof=1, as R's ``sd``) over the forests.
    forest_oob_errors_ : ndarray of shape (n_forests,)
        OOB error of each thresholding forest.
    ranking_ : ndarray of shape (n_features_in_,)
        Column indices sorted by decreasing mean importance (stable for ties).
    std_by_rank_ : ndarray of shape (n_features_in_,)
        ``importances_std_[ranking_]``, the curve the CART tree is fitted to.
    cart_predictions_ : ndarray of shape (n_features_in_,)
        The CART tree's prediction at each rank.
    threshold_ : float
        ``threshold_multiplier`` x the smallest CART prediction.
    oob_errors_interp_ : dict of ndarrays
        Nested models: ``n_features`` (1..K), ``mean`` and ``std`` of the OOB error
        over ``n_fits_interp`` forests, ``feature`` (index of the feature added).
    th_pred_ : float
        TH_pred, the mean jump of the nested errors beyond f_p2.
    oob_errors_pred_ : dict of ndarrays
        Ascending steps: ``feature`` tried at each step (the first step tries the
        first feature alone), ``mean`` and ``std`` of the OOB error of the model
        with it, ``kept`` (whether it joined), ``n_features`` of the model tried.
    f_p1_, f_p2_, f_pred_ : ndarray of int
        Column indices of the three selections, in importance order
        (``transform`` and ``get_support`` keep f_pred in column order).
    f_p1_names_, f_p2_names_, f_pred_names_ : ndarray of str
        Their names (``feature_names_in_``, or "x0", "x1", ... for arrays).

    Notes
    -----
    *Importance.* For each tree, importance of feature p = (error on the tree's
    OOB rows with column p permuted among them) - (error on them as is); the forest
    importance is the mean over all its trees. Only the features a tree splits on
    are evaluated: for any other feature the difference is exactly 0.

    *Threshold.* VSURF grows a maximal rpart tree on the sd curve and prunes it by
    10-fold cross-validation. We fit one tree with rpart's default stopping rules
    (``minsplit=20, minbucket=7, cp=0.01``) instead: it gives the same staircase
    on the typical curve and does not make the threshold depend on random folds.
    If no feature exceeds the threshold, the most important feature alone is kept,
    so the later steps always have something to work on.

    *Prediction step.* TH_pred = mean of |err(j+1) - err(j)| over the nested mean
    errors for j = |f_p2| .. |f_p1| - 1. When f_p2 = f_p1 there is no such jump:
    VSURF then skips the step and returns no f_pred; we use TH_pred = 0 (a feature
    joins if it lowers the error at all). A candidate is compared with the error
    of the last *accepted* model, as in VSURF's code (``VSURF_pred``: ``t`` is only
    updated when a variable joins).

    *Other differences from VSURF (1.2.x), kept on purpose.*

    - Thresholding keeps features whose mean importance is strictly greater than
      the threshold; VSURF keeps those greater than or equal to it. They differ
      only for a threshold of 0, where ``>`` is the safer choice: it drops the
      features no tree ever used (importance exactly 0).
    - Nested and ascending forests try ``max_features_nested`` (default sqrt(k))
      features per split for every model size k; VSURF switches to k/3 once the
      model has more features than there are rows (k > n). With ~136 rows and
      |f_p1| rarely above n this seldom applies.
    - The data are cast to float32 (as scikit-learn's trees require), which merges
      values closer than float32's resolution; VSURF works in float64.
    - The interpretation step walks all of f_p1 by default, as VSURF 1.2 does
      (its ``VSURF_interp`` has no cap); ``max_interp_features`` is an optional cap,
      recorded with the other parameters of a stored run.

    *Backends* (``backend``). "numba" grows the same trees as "sklearn" but on
    the ranks of each column instead of its values: each node draws up to
    ``mtry`` candidate features without replacement (more if all of those are
    constant in the node, as in scikit-learn), finds the best Gini split of each
    from the class weights per rank, and keeps the first best; an out-of-bag row
    goes left when its value is at most the midpoint between the values either
    side of the cut. Its random numbers are a splitmix64 stream per forest, seeded
    from the forest's SeedSequence, so a seed gives the same result for any
    ``n_jobs`` but not the same as "sklearn" (different draws, same distribution).

    *OOB error of a forest.* A row's prediction is the majority vote of the trees
    for which it is out of bag; rows never out of bag are left out; ties count as
    the chance that a random tie-break is wrong.

    Examples
    --------
    Two classes of 20 rows; only feature 0 differs between them. Tiny forests keep it quick
    (``from_preset("fast")`` is the usual starting point on real data):

    >>> import numpy as np
    >>> from stemstore.analysis.selection import RandomForestSelector
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 20)
    >>> X = rng.normal(size=(40, 6))
    >>> X[:, 0] += 3 * y
    >>> selector = RandomForestSelector(n_forests=3, n_trees=20, n_fits_interp=2,
    ...                                 n_trees_interp=10, n_fits_pred=2, n_trees_pred=10,
    ...                                 random_state=0)
    >>> selector.fit(X, y).f_pred_names_
    array(['x0'], dtype=object)
    >>> selector.get_support()
    array([ True, False, False, False, False, False])
    >>> selector.transform(X).shape
    (40, 1)
    """

    def __init__(
        self,
        n_forests: int = 50,
        n_trees: int = 2000,
        max_features=1 / 3,
        n_fits_interp: int = 50,
        n_trees_interp: int = 200,
        n_fits_pred: int = 50,
        n_trees_pred: int = 200,
        max_features_nested="sqrt",
        threshold_multiplier: float = 1.0,
        n_sd_interp: float = 0.0,
        n_mean_jumps_pred: float = 1.0,
        max_interp_features: int | None = None,
        cart_min_samples_split: int = 20,
        cart_min_samples_leaf: int = 7,
        cart_cp: float = 0.01,
        min_class_count: int = 10,
        backend: str = "numba",
        n_jobs: int | None = None,
        random_state=None,
        verbose: int = 0,
    ):
        self.n_forests = n_forests
        self.n_trees = n_trees
        self.max_features = max_features
        self.n_fits_interp = n_fits_interp
        self.n_trees_interp = n_trees_interp
        self.n_fits_pred = n_fits_pred
        self.n_trees_pred = n_trees_pred
        self.max_features_nested = max_features_nested
        self.threshold_multiplier = threshold_multiplier
        self.n_sd_interp = n_sd_interp
        self.n_mean_jumps_pred = n_mean_jumps_pred
        self.max_interp_features = max_interp_features
        self.cart_min_samples_split = cart_min_samples_split
        self.cart_min_samples_leaf = cart_min_samples_leaf
        self.cart_cp = cart_cp
        self.min_class_count = min_class_count
        self.backend = backend
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    @classmethod
    def from_preset(cls, preset: str = "paper", **overrides) -> RandomForestSelector:
        """A selector with a named parameter set (see ``PRESETS``) plus overrides.

        Parameters
        ----------
        preset : {"paper", "fast"}, default="paper"
            Name of the parameter set in ``PRESETS``.
        **overrides
            Constructor parameters that replace the preset's (or add to them).

        Returns
        -------
        selector : RandomForestSelector
            An unfitted selector.

        Examples
        --------
        >>> from stemstore.analysis.selection import RandomForestSelector
        >>> RandomForestSelector.from_preset("fast", n_jobs=2).n_forests
        10
        """
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[preset], **overrides})

    # -- fitting -------------------------------------------------------------

    def fit(self, X, y):
        """Run the three steps (thresholding, interpretation, prediction) on X and y.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Feature values. With a DataFrame, the column names become ``feature_names_in_``
            and name the selections.
        y : array-like of shape (n_samples,)
            Class labels; at least two classes, each with ``min_class_count`` rows or more.

        Returns
        -------
        self : RandomForestSelector
            The fitted selector (``f_p1_``, ``f_p2_``, ``f_pred_`` and the other attributes).
        """
        X, y = validate_data(self, X, y, dtype=np.float32, ensure_min_features=1, order="C")
        self._check_parameters()
        self.classes_, y_codes = np.unique(y, return_inverse=True)
        self._check_classes(y_codes)
        y_codes = y_codes.astype(np.float64)  # class codes 0..C-1, as the trees want them

        entropy = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        if self.backend == "numba":
            # The compiled forests release the GIL: threads share the ranks
            # instead of copying them to worker processes.
            parallel = Parallel(n_jobs=self.n_jobs, verbose=self.verbose, prefer="threads")
            data = _RankedData(*_column_ranks(X), y_codes.astype(np.int64), len(self.classes_))
        else:
            parallel = Parallel(n_jobs=self.n_jobs, verbose=self.verbose)
            data = None
        self._thresholding(X, y_codes, entropy, parallel, data)
        self._interpretation(X, y_codes, entropy, parallel, data)
        self._prediction(X, y_codes, entropy, parallel, data)

        names = self._feature_names()
        self.f_p1_names_ = names[self.f_p1_]
        self.f_p2_names_ = names[self.f_p2_]
        self.f_pred_names_ = names[self.f_pred_]
        return self

    def _check_parameters(self) -> None:
        for name in (
            "n_forests",
            "n_trees",
            "n_fits_interp",
            "n_trees_interp",
            "n_fits_pred",
            "n_trees_pred",
            "min_class_count",
        ):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.backend not in ("numba", "sklearn"):
            raise ValueError(f"backend={self.backend!r}: use 'numba' or 'sklearn'")
        if self.max_interp_features is not None and self.max_interp_features < 1:
            raise ValueError("max_interp_features must be None or a positive int")
        _resolve_max_features(self.max_features, self.n_features_in_)  # raises if malformed
        _resolve_max_features(self.max_features_nested, self.n_features_in_)

    def _check_classes(self, y_codes: np.ndarray) -> None:
        counts = np.bincount(y_codes, minlength=len(self.classes_))
        if len(self.classes_) < 2:
            raise ValueError(
                f"RandomForestSelector needs at least two classes; y has only one class, {self.classes_[0]!r}"
            )
        if counts.min() < self.min_class_count:
            detail = ", ".join(f"{c!r}: {n}" for c, n in zip(self.classes_.tolist(), counts))
            raise ValueError(
                f"too few samples: every class needs at least {self.min_class_count} rows "
                f"for random-forest feature selection, got {detail}"
            )

    def _feature_names(self) -> np.ndarray:
        if hasattr(self, "feature_names_in_"):
            return np.asarray(self.feature_names_in_, dtype=object)
        return np.array([f"x{i}" for i in range(self.n_features_in_)], dtype=object)

    def _seed(self, entropy: int, *key: int) -> np.random.SeedSequence:
        return np.random.SeedSequence(entropy, spawn_key=key)

    def _thresholding(self, X, y, entropy, parallel, data) -> None:
        """Step 1: importances over n_forests forests, CART threshold, f_p1."""
        mtry = _resolve_max_features(self.max_features, X.shape[1])
        seeds = [self._seed(entropy, _STEP_THRESHOLDING, forest) for forest in range(self.n_forests)]
        if data is None:
            tasks = (delayed(_forest_importances)(X, y, self.n_trees, mtry, seed) for seed in seeds)
        else:
            tasks = (
                delayed(_nb_forest_importances)(
                    (data.ranks, data.order, data.values), data.y, data.n_classes, self.n_trees, mtry, seed
                )
                for seed in seeds
            )
        results = parallel(tasks)
        self.importances_ = np.vstack([importances for importances, _ in results])
        self.forest_oob_errors_ = np.array([error for _, error in results])
        self.importances_mean_ = self.importances_.mean(axis=0)
        if self.n_forests > 1:
            self.importances_std_ = self.importances_.std(axis=0, ddof=1)
        else:  # a single forest gives no spread; the threshold is then 0
            self.importances_std_ = np.zeros(X.shape[1])
        self.ranking_ = np.argsort(-self.importances_mean_, kind="stable")
        self.std_by_rank_ = self.importances_std_[self.ranking_]

        lowest_stair, self.cart_predictions_ = _importance_threshold(
            self.std_by_rank_, self.cart_min_samples_split, self.cart_min_samples_leaf, self.cart_cp
        )
        self.threshold_ = self.threshold_multiplier * lowest_stair
        # Sorted by decreasing mean, so the features above the threshold are a prefix.
        n_kept = int(np.sum(self.importances_mean_ > self.threshold_))
        self.f_p1_ = self.ranking_[: max(n_kept, 1)]

    def _interpretation(self, X, y, entropy, parallel, data) -> None:
        """Step 2: nested forests on the top 1..K features of f_p1, f_p2."""
        n_nested = len(self.f_p1_)
        if self.max_interp_features is not None:
            n_nested = min(n_nested, self.max_interp_features)
        top = self.f_p1_[:n_nested]
        if data is None:
            # Ship only the candidate columns to the workers (X itself can be large).
            X_top = np.ascontiguousarray(X[:, top])
            results = parallel(
                delayed(_forest_oob_error)(
                    X_top,
                    y,
                    np.arange(k),
                    self.n_trees_interp,
                    self.max_features_nested,
                    self._seed(entropy, _STEP_INTERPRETATION, k, fit),
                )
                for k in range(1, n_nested + 1)
                for fit in range(self.n_fits_interp)
            )
        else:
            # Model k's columns are the first k rows of the candidates' ranks: one
            # task grows all n_fits_interp forests of a model.
            ranks, order, values = data.ranks[top], data.order[top], data.values[top]
            per_model = parallel(
                delayed(_nb_oob_errors)(
                    (ranks[:k], order[:k], values[:k]),
                    data.y,
                    data.n_classes,
                    self.n_trees_interp,
                    self.max_features_nested,
                    [self._seed(entropy, _STEP_INTERPRETATION, k, fit) for fit in range(self.n_fits_interp)],
                )
                for k in range(1, n_nested + 1)
            )
            results = [error for errors in per_model for error in errors]
        errors = np.array(results).reshape(n_nested, self.n_fits_interp)
        mean = errors.mean(axis=1)
        std = errors.std(axis=1, ddof=1) if self.n_fits_interp > 1 else np.zeros(n_nested)
        self.oob_errors_interp_ = {
            "n_features": np.arange(1, n_nested + 1),
            "feature": self.f_p1_[:n_nested].copy(),
            "mean": mean,
            "std": std,
        }
        best = int(np.argmin(mean))
        tolerance = mean[best] + self.n_sd_interp * std[best]
        n_selected = int(np.flatnonzero(mean <= tolerance)[0]) + 1
        self.f_p2_ = self.f_p1_[:n_selected]

    def _prediction(self, X, y, entropy, parallel, data) -> None:
        """Step 3: ascending forests over f_p2 with the TH_pred rule, f_pred."""
        nested_mean = self.oob_errors_interp_["mean"]
        n_p2 = len(self.f_p2_)
        # |err(j+1) - err(j)| for j = |f_p2| .. K - 1 (1-based), i.e. beyond f_p2.
        jumps = np.abs(np.diff(nested_mean[n_p2 - 1 :]))
        self.th_pred_ = float(jumps.mean()) if jumps.size else 0.0
        required_gain = self.n_mean_jumps_pred * self.th_pred_

        X_p2 = np.ascontiguousarray(X[:, self.f_p2_])  # only these columns go to the workers
        local = {int(feature): i for i, feature in enumerate(self.f_p2_)}

        n_chunks = min(self.n_fits_pred, effective_n_jobs(self.n_jobs))

        def mean_std_error(columns, step):
            seeds = [self._seed(entropy, _STEP_PREDICTION, step, fit) for fit in range(self.n_fits_pred)]
            if data is None:
                results = parallel(
                    delayed(_forest_oob_error)(
                        X_p2,
                        y,
                        [local[c] for c in columns],
                        self.n_trees_pred,
                        self.max_features_nested,
                        seed,
                    )
                    for seed in seeds
                )
            else:
                # One task per worker, each growing a share of the fits: a step's
                # forests are small, so per-task overhead would dominate.
                ranks, order, values = data.ranks[columns], data.order[columns], data.values[columns]
                chunks = parallel(
                    delayed(_nb_oob_errors)(
                        (ranks, order, values),
                        data.y,
                        data.n_classes,
                        self.n_trees_pred,
                        self.max_features_nested,
                        seeds[chunk::n_chunks],
                    )
                    for chunk in range(n_chunks)
                )
                # Back to fit order (chunk c holds fits c, c + n_chunks, ...).
                results = [0.0] * len(seeds)
                for chunk, errors in enumerate(chunks):
                    results[chunk::n_chunks] = errors
            errors = np.array(results)
            std = errors.std(ddof=1) if errors.size > 1 else 0.0
            return errors.mean(), std

        selected = [int(self.f_p2_[0])]
        current_error, current_std = mean_std_error(selected, 0)
        tried, means, stds, kept, sizes = [selected[0]], [current_error], [current_std], [True], [1]
        for step, feature in enumerate(self.f_p2_[1:], start=1):
            candidate = selected + [int(feature)]
            error, std = mean_std_error(candidate, step)
            joins = (current_error - error) > required_gain
            tried.append(int(feature))
            means.append(error)
            stds.append(std)
            kept.append(bool(joins))
            sizes.append(len(candidate))
            if joins:
                selected, current_error = candidate, error
        self.oob_errors_pred_ = {
            "feature": np.array(tried, dtype=np.intp),
            "n_features": np.array(sizes),
            "mean": np.array(means),
            "std": np.array(stds),
            "kept": np.array(kept),
        }
        self.f_pred_ = np.array(selected, dtype=np.intp)

    # -- SelectorMixin -----------------------------------------------------------

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "f_pred_")
        mask = np.zeros(self.n_features_in_, dtype=bool)
        mask[self.f_pred_] = True
        return mask
