"""Tests of the random-forest feature selection (VSURF) and its plots.

Small forests keep the whole file fast; the numbers of the "paper" preset are
exercised by benchmarks/bench_selection.py, not here.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from stemstore.analysis.plots import plot_importance, plot_oob_curves
from stemstore.analysis.selection import (
    PRESETS,
    RandomForestSelector,
    _column_ranks,
    _fit_bootstrap_tree,
    _forest_importances,
    _forest_random_streams,
    _leaf_classes,
    _nb_forest,
    _nb_forest_importances,
    _predict_local,
    _tree_target,
)

# Smaller than the "fast" preset: enough trees for the synthetic problems below.
TINY = dict(n_forests=5, n_trees=80, n_fits_interp=8, n_trees_interp=50, n_fits_pred=8, n_trees_pred=50)
INFORMATIVE = [0, 1, 2]


def make_problem(n_per_class=60, n_features=300, shift=2.5, copies_of_first=0, seed=0):
    """Raw (0) vs stem (1): features 0-2 shift with the class, the rest are noise.

    ``copies_of_first`` near-duplicates of feature 0 go in columns 3, 4, ...
    """
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per_class)
    X = rng.normal(size=(y.size, n_features))
    X[:, INFORMATIVE] += shift * y[:, None]
    for column in range(3, 3 + copies_of_first):
        X[:, column] = X[:, 0] + 0.05 * rng.normal(size=y.size)
    return X, y


@pytest.fixture(scope="module")
def fitted():
    X, y = make_problem()
    return RandomForestSelector(**TINY, random_state=0).fit(X, y), X, y


def test_informative_features_are_selected_and_noise_is_not(fitted):
    selector, X, _ = fitted
    noise = np.arange(3, X.shape[1])
    assert set(INFORMATIVE) <= set(selector.f_p1_)
    # Thresholding is the permissive step of VSURF: it may keep a few noise
    # features that happen to correlate with the label in this sample, but it
    # must discard the vast majority of them.
    assert np.isin(noise, selector.f_p1_).sum() < 0.1 * noise.size
    assert len(selector.f_pred_) >= 2
    assert set(selector.f_pred_) <= set(INFORMATIVE)
    assert set(selector.f_pred_) <= set(selector.f_p2_) <= set(selector.f_p1_)
    # The three selections are nested prefixes/subsets in importance order.
    np.testing.assert_array_equal(selector.f_p2_, selector.f_p1_[: len(selector.f_p2_)])
    np.testing.assert_array_equal(selector.f_p1_, selector.ranking_[: len(selector.f_p1_)])
    assert np.all(selector.importances_mean_[selector.f_p1_] > selector.threshold_)


def test_fitted_attributes_have_consistent_shapes(fitted):
    selector, X, _ = fitted
    p = X.shape[1]
    assert selector.n_features_in_ == p
    assert selector.importances_.shape == (TINY["n_forests"], p)
    for name in ("importances_mean_", "importances_std_", "ranking_", "cart_predictions_", "std_by_rank_"):
        assert getattr(selector, name).shape == (p,)
    assert selector.threshold_ == pytest.approx(selector.cart_predictions_.min())
    interp = selector.oob_errors_interp_
    assert len(interp["mean"]) == len(interp["std"]) == len(selector.f_p1_)
    pred = selector.oob_errors_pred_
    assert len(pred["mean"]) == len(pred["kept"]) == len(selector.f_p2_)
    np.testing.assert_array_equal(pred["feature"][pred["kept"]], selector.f_pred_)
    assert selector.get_support().sum() == len(selector.f_pred_)
    assert selector.transform(X).shape == (X.shape[0], len(selector.f_pred_))
    assert list(selector.f_pred_names_) == [f"x{i}" for i in selector.f_pred_]


def test_correlated_copies_are_thinned_out_in_f_pred():
    # With forests this small, a second copy sometimes lowers the mean OOB error by
    # more than TH_pred and joins f_pred, on either backend (one seed chosen to make
    # a single copy pass would only test that seed): over seeds, f_pred must keep far
    # fewer copies than f_p1, and often exactly one.
    X, y = make_problem(copies_of_first=2, seed=1)
    copies = {0, 3, 4}
    kept = []
    for seed in range(8):
        selector = RandomForestSelector(**TINY, random_state=seed).fit(X, y)
        assert copies & set(selector.f_p1_) == copies  # all copies look important...
        kept.append(len(copies & set(selector.f_pred_)))
    assert np.mean(kept) < 2.2 and kept.count(1) >= 2, kept  # ...but fewer are needed to predict


@pytest.mark.parametrize("backend", ["numba", "sklearn"])
def test_same_seed_gives_identical_results_for_any_n_jobs(backend):
    X, y = make_problem(n_per_class=40, n_features=60, seed=2)
    params = dict(TINY, n_trees=40, n_trees_interp=20, n_trees_pred=20, random_state=7, backend=backend)
    first = RandomForestSelector(**params).fit(X, y)
    again = RandomForestSelector(**params).fit(X, y)
    parallel = RandomForestSelector(**params, n_jobs=2).fit(X, y)
    for other in (again, parallel):
        np.testing.assert_array_equal(first.importances_, other.importances_)
        np.testing.assert_array_equal(first.oob_errors_interp_["mean"], other.oob_errors_interp_["mean"])
        np.testing.assert_array_equal(first.oob_errors_pred_["mean"], other.oob_errors_pred_["mean"])
        np.testing.assert_array_equal(first.f_pred_, other.f_pred_)
        assert first.threshold_ == other.threshold_
    different = RandomForestSelector(**dict(params, random_state=8)).fit(X, y)
    assert not np.array_equal(first.importances_, different.importances_)


def test_works_in_a_pipeline_and_keeps_dataframe_names():
    X, y = make_problem(n_per_class=40, n_features=40, seed=3)
    frame = pd.DataFrame(X, columns=[f"lowLevel.feature.{i}" for i in range(X.shape[1])])
    pipeline = make_pipeline(RandomForestSelector(**TINY, random_state=0), LogisticRegression())
    pipeline.fit(frame, y)
    assert pipeline.score(frame, y) > 0.9
    selector = pipeline[0]
    assert list(selector.f_pred_names_) == [f"lowLevel.feature.{i}" for i in selector.f_pred_]
    # transform keeps the original column order; f_pred_ is in importance order.
    np.testing.assert_array_equal(
        selector.get_feature_names_out(),
        sorted(selector.f_pred_names_, key=lambda n: int(n.rsplit(".", 1)[1])),
    )


def test_get_params_and_clone_round_trip():
    selector = RandomForestSelector.from_preset("fast", n_jobs=2, random_state=3)
    params = selector.get_params()
    assert params["n_forests"] == PRESETS["fast"]["n_forests"] and params["n_jobs"] == 2
    copy = clone(selector)
    assert copy.get_params() == params
    copy.set_params(n_trees=7)
    assert copy.n_trees == 7 and selector.n_trees == PRESETS["fast"]["n_trees"]
    paper = RandomForestSelector.from_preset("paper")
    assert (paper.n_forests, paper.n_trees, paper.n_fits_interp, paper.n_fits_pred) == (50, 2000, 50, 50)
    assert RandomForestSelector().get_params() == paper.get_params()  # defaults = paper
    with pytest.raises(ValueError, match="unknown preset"):
        RandomForestSelector.from_preset("slow")


def test_feature_never_used_by_any_tree_has_importance_exactly_zero():
    X, y = make_problem(n_per_class=30, n_features=20, seed=4)
    X[:, 5] = 1.0  # a constant column can never be split on
    importances, _ = _forest_importances(
        X.astype(np.float32), y.astype(np.float64), 50, 6, np.random.SeedSequence(0)
    )
    assert importances[5] == 0.0
    assert importances[INFORMATIVE].min() > 0


def test_backends_select_alike():
    # The backends draw their random numbers differently, so a seed gives different
    # forests; the procedure and the distribution of its results are the same. On a
    # problem with a clear answer both find it, and their importances agree.
    X, y = make_problem()
    fits = {
        backend: RandomForestSelector(**TINY, random_state=0, backend=backend).fit(X, y)
        for backend in ("numba", "sklearn")
    }
    for selector in fits.values():
        assert set(selector.f_pred_) <= set(INFORMATIVE) and len(selector.f_pred_) >= 2
        assert set(INFORMATIVE) <= set(selector.f_p1_)
    numba, sklearn = fits["numba"].importances_mean_, fits["sklearn"].importances_mean_
    assert np.corrcoef(numba, sklearn)[0, 1] > 0.9
    np.testing.assert_allclose(numba[INFORMATIVE], sklearn[INFORMATIVE], rtol=0.25)
    assert abs(fits["numba"].forest_oob_errors_.mean() - fits["sklearn"].forest_oob_errors_.mean()) < 0.03


def test_numba_importance_of_unused_feature_is_zero_and_classes_beyond_two_work():
    X, y = make_problem(n_per_class=30, n_features=20, seed=4)
    X[:, 5] = 1.0  # a constant column can never be split on
    ranked = _column_ranks(X.astype(np.float32))
    importances, error = _nb_forest_importances(
        ranked, y.astype(np.int64), 2, 50, 6, np.random.SeedSequence(0)
    )
    assert importances[5] == 0.0 and importances[INFORMATIVE].min() > 0 and 0 <= error < 0.2
    # Three classes go through the general (not two-class) split search.
    y3 = np.repeat([0, 1, 2], 30)
    X3 = np.random.default_rng(0).normal(size=(90, 30))
    X3[:, :2] += 2.5 * np.c_[y3 == 1, y3 == 2]
    selector = RandomForestSelector(**TINY, random_state=0).fit(X3, y3)
    assert set(selector.f_pred_) == {0, 1}
    with pytest.raises(ValueError, match="backend"):
        RandomForestSelector(**TINY, backend="ranger").fit(X, y)


@pytest.mark.parametrize("n_per_class", [40, 75])  # ranks in 2 and 3 words of the level bitmap
def test_numba_split_search_through_the_level_bitmap_finds_the_same_trees(n_per_class):
    X, y = make_problem(n_per_class=n_per_class, n_features=120, shift=0.8, seed=7)
    X[:, 10:20] = np.round(X[:, 10:20])  # tied values: fewer levels than rows
    ranks, order, values = _column_ranks(X.astype(np.float32))
    y = y.astype(np.int64)

    def grow(sparse_spread):
        return _nb_forest(ranks, order, values, y, 2, 40, 40, np.uint64(3), True, sparse_spread)

    always_dense, always_bitmap, default = grow(10**6), grow(0), grow(2)
    for result in (always_bitmap, default):
        np.testing.assert_array_equal(result[0], always_dense[0])  # importances
        np.testing.assert_array_equal(result[1], always_dense[1])  # OOB votes
    assert always_dense[0].max() > 0


def test_numpy_tree_walk_matches_scikit_learn():
    X, y = make_problem(n_per_class=30, n_features=30, seed=5)
    X = X.astype(np.float32)
    rng, tree_random_state = _forest_random_streams(np.random.SeedSequence(1))
    for _ in range(10):
        tree, _ = _fit_bootstrap_tree(X, _tree_target(y.astype(float)), 10, rng, tree_random_state)
        feature = tree.tree_.feature
        used = np.unique(feature[feature >= 0])
        local = np.where(feature >= 0, np.searchsorted(used, feature), -1)
        np.testing.assert_array_equal(
            _predict_local(tree, local, X[:, used]), _leaf_classes(tree)[tree.tree_.apply(X)]
        )


def test_too_few_samples_of_a_class_raise_a_clear_error():
    X, y = make_problem(n_per_class=30, n_features=10)
    keep = np.r_[0:30, 30:39]  # 30 raw rows, only 9 stem rows
    with pytest.raises(ValueError, match="too few samples.*at least 10"):
        RandomForestSelector(**TINY).fit(X[keep], y[keep])
    with pytest.raises(ValueError, match="two classes"):
        RandomForestSelector(**TINY).fit(X[:30], y[:30])


def test_plots_write_non_empty_pngs(fitted, tmp_path):
    selector, _, _ = fitted
    names = [f"lowLevel.barkbands.max.{i}" for i in range(selector.n_features_in_)]
    figure = plot_importance(
        selector.importances_mean_, selector.importances_std_, names, top=50, path=tmp_path / "fig2.png"
    )
    assert len(figure.axes[0].patches) == 50
    figure = plot_oob_curves(
        selector.oob_errors_interp_,
        selector.oob_errors_pred_,
        n_selected_interp=len(selector.f_p2_),
        pred_labels=[names[i] for i in selector.oob_errors_pred_["feature"]],
        path=tmp_path / "fig3.png",
    )
    assert figure.axes[0].get_ylabel() == "OOB error rate"
    plot_oob_curves(pd.DataFrame(selector.oob_errors_interp_), [0.3, 0.2], path=tmp_path / "fig3-plain.png")
    for name in ("fig2.png", "fig3.png", "fig3-plain.png"):
        content = (tmp_path / name).read_bytes()
        assert content.startswith(b"\x89PNG") and len(content) > 5000


@pytest.mark.parametrize("backend", ["numba", "sklearn"])
def test_forests_on_a_dask_cluster_give_the_local_results(backend):
    """joblib's dask backend (what ``select --dask`` uses) changes where forests grow, not what they find."""
    import joblib
    from distributed import Client, LocalCluster

    X, y = make_problem(n_per_class=40, n_features=60, seed=2)
    params = dict(TINY, n_trees=40, n_trees_interp=20, n_trees_pred=20, random_state=7, backend=backend)
    local = RandomForestSelector(**params).fit(X, y)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster), joblib.parallel_config(backend="dask"):
            remote = RandomForestSelector(**params, n_jobs=-1).fit(X, y)
    np.testing.assert_array_equal(local.importances_, remote.importances_)
    np.testing.assert_array_equal(local.oob_errors_interp_["mean"], remote.oob_errors_interp_["mean"])
    np.testing.assert_array_equal(local.oob_errors_pred_["mean"], remote.oob_errors_pred_["mean"])
    for name in ("f_p1_", "f_p2_", "f_pred_"):
        np.testing.assert_array_equal(getattr(local, name), getattr(remote, name))
