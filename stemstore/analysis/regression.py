"""Regression from raw-segment features to stem-segment features (docs/method.md, section 5).

Per instrument group, a multi-output regression learns to predict the processed stem's values of
the prediction features (f_pred) from the raw recording's values of the same features. This
module is a pure library working on pandas DataFrames; the store and the CLI call it and persist
what it returns.

The pieces, in the order :func:`run_regression` uses them:

1. :func:`pairs_to_xy` turns the store's wide "pairs" table (one row per segment, ``role`` raw or
   stem, ``pair`` linking the two) into aligned matrices X (raw) and Y (stem).
2. :func:`split_train_test` keeps a stored train/test split or makes a seeded one that holds out
   whole multitracks.
3. :func:`find_outliers` flags training pairs with a value more than 3 sd from its feature's mean.
4. :func:`build_paper_models` (the study's hyperparameters, unscaled) or :func:`fit_tuned_models`
   (grid search with 5-fold cross-validation, scaled inputs and targets) fit the five models.
5. :func:`regression_metrics` computes per-feature mape and mae on the test pairs ("Table 6").
6. :func:`search_ensemble` picks the best model or average of models ("Table 7").

:func:`predict_stem` applies a fitted model (or :class:`AveragingRegressor`) to one raw recording;
:func:`save_model` / :func:`load_model` persist models with skops (no pickle).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from collections.abc import Callable, Mapping, Sequence

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.cross_decomposition import PLSRegression
from sklearn.ensemble import RandomForestRegressor
from sklearn.exceptions import DataConversionWarning
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, GroupShuffleSplit, KFold
from sklearn.multioutput import MultiOutputRegressor
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

#: Columns of the pairs table that are not features.
ID_COLUMNS = ("multitrack", "instrument", "role", "pair", "split")
#: Model names, in report order.
MODEL_NAMES = ("svr", "rf", "knn", "pls", "lr")
PRESETS = ("paper", "tuned")
#: Parallel jobs by preset when the caller names none (``stemstore regress`` without ``--jobs``):
#: the tuned grid searches on all cores (on two cores a tuned run takes about 0.8x the time), the
#: paper preset in one, because its forest on a group's few dozen pairs is slower in two threads
#: than in one (about 1.1x the run). Results are the same for any number.
DEFAULT_N_JOBS: dict[str, int | None] = {"tuned": -1, "paper": None}
OUTLIER_RULES = ("3sigma", "none")
#: Fewer pairs than this cannot give both a training set and a test set worth reporting.
MIN_PAIRS = 10

#: The reference study's optimum hyperparameters (docs/method.md, section 5), inputs unscaled.
PAPER_HYPERPARAMETERS: dict[str, dict[str, dict[str, Any]]] = {
    "bass": {
        "svr": {"kernel": "rbf", "C": 1.0, "gamma": 8.0, "epsilon": 0.002},
        "rf": {"n_estimators": 1000},
        "knn": {"n_neighbors": 6, "metric": "minkowski", "p": 2},
        "pls": {"n_components": 1},
        "lr": {},
    },
    "guitar": {
        "svr": {"kernel": "rbf", "C": 1024.0, "gamma": 3.12e-2, "epsilon": 0.149},
        "rf": {"n_estimators": 750},
        "knn": {"n_neighbors": 19, "metric": "minkowski", "p": 2},
        "pls": {"n_components": 1},
        "lr": {},
    },
    "vocal": {
        "svr": {"kernel": "sigmoid", "C": 64.0, "gamma": 1e-4, "epsilon": 0.73},
        "rf": {"n_estimators": 1000},
        "knn": {"n_neighbors": 13, "metric": "minkowski", "p": 2},
        "pls": {"n_components": 1},
        "lr": {},
    },
    "keys": {
        "svr": {"kernel": "sigmoid", "C": 32768.0, "gamma": 1.25e-4, "epsilon": 0.299},
        "rf": {"n_estimators": 2000},
        "knn": {"n_neighbors": 5, "metric": "minkowski", "p": 2},
        "pls": {"n_components": 4},
        "lr": {},
    },
}

#: Grids of the "tuned" preset, by model, with the model's own parameter names. Inputs and
#: targets are standardised inside the pipeline, so C/gamma/epsilon are on a unit scale.
#: ``pls`` n_components and ``knn`` n_neighbors are clipped to what the data allows.
TUNED_GRIDS: dict[str, dict[str, list]] = {
    "svr": {
        "kernel": ["rbf", "sigmoid"],
        "C": [0.1, 1.0, 10.0, 100.0],
        "gamma": ["scale", 0.01, 0.1],
        "epsilon": [0.01, 0.1],
    },
    "rf": {
        "n_estimators": [500],
        "max_features": [1.0, 0.5],
        "min_samples_leaf": [1, 3],
    },
    "knn": {
        "n_neighbors": [3, 5, 7, 10, 15, 20],
        "weights": ["uniform", "distance"],
        "p": [1, 2],
    },
    "pls": {"n_components": list(range(1, 11))},
    "lr": {},
}

#: Where each model's own parameters sit inside the tuned pipeline
#: TransformedTargetRegressor(Pipeline(scale, model)).
_TUNED_PREFIX = {
    "svr": "regressor__model__estimator__",  # MultiOutputRegressor(SVR)
    "rf": "regressor__model__",
    "knn": "regressor__model__",
    "pls": "regressor__model__",
    "lr": "regressor__model__",
}
#: Cross-validation score of the tuned preset: sklearn's MAPE (scale-free, like the study's
#: metric, so features of very different magnitudes weigh the same).
CV_SCORING = "neg_mean_absolute_percentage_error"
CV_FOLDS = 5


# --------------------------------------------------------------------------------------------
# Pairs table -> matrices


class PairedData(NamedTuple):
    """Raw and stem feature values aligned by pair (row i of X and of Y is the same pair)."""

    X: np.ndarray  #: raw values, shape (n_pairs, n_features)
    Y: np.ndarray  #: stem values, shape (n_pairs, n_features)
    pairs: np.ndarray  #: pair ids, sorted
    multitracks: np.ndarray  #: multitrack of each pair
    split: np.ndarray  #: "train", "test" or None per pair


def feature_columns(df: pd.DataFrame) -> list[str]:
    """The feature columns of a pairs table: every column that is not an id column."""
    return [c for c in df.columns if c not in ID_COLUMNS]


def _normalise_split(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return str(value)


def pairs_to_xy(df: pd.DataFrame, features: Sequence[str] | None = None) -> PairedData:
    """Align the raw and stem rows of a pairs table into matrices X (raw) and Y (stem).

    The same features are the inputs (raw values) and the targets (stem values). Pairs are
    sorted by pair id, so the result does not depend on row order.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per segment: columns ``multitrack``, ``role`` (raw|stem) and ``pair``
        (``instrument`` and ``split`` are optional), and the feature columns.
    features : sequence of str, optional
        The feature columns to use; by default every non-id column.

    Returns
    -------
    PairedData
        X (raw) and Y (stem) as (pairs x features) arrays, with the pair ids, multitracks and
        splits in the same order.

    Raises
    ------
    ValueError
        For a missing column, an unknown role, a pair without exactly one raw and one stem
        row, a pair whose two rows disagree on multitrack or split, or a missing (NaN) or
        infinite feature value.
    """
    missing_ids = [c for c in ("multitrack", "role", "pair") if c not in df.columns]
    if missing_ids:
        raise ValueError(f"pairs table lacks required column(s): {', '.join(missing_ids)}")
    features = list(feature_columns(df) if features is None else features)
    if not features:
        raise ValueError("no feature columns given")
    if len(set(features)) != len(features):
        raise ValueError("feature list contains duplicates")
    missing_features = [f for f in features if f not in df.columns]
    if missing_features:
        raise ValueError(
            f"pairs table lacks {len(missing_features)} feature column(s): "
            + ", ".join(missing_features[:10])
        )

    roles = df["role"].astype(str)
    bad_roles = sorted(set(roles) - {"raw", "stem"})
    if bad_roles:
        raise ValueError(f"role must be 'raw' or 'stem', found: {', '.join(bad_roles)}")

    pair_ids = df["pair"].astype(str)
    counts = pd.crosstab(pair_ids, roles).reindex(columns=["raw", "stem"], fill_value=0)
    incomplete = counts[(counts["raw"] != 1) | (counts["stem"] != 1)]
    if len(incomplete):
        described = [f"{p} (raw={r.raw}, stem={r.stem})" for p, r in incomplete.head(10).iterrows()]
        raise ValueError(
            f"{len(incomplete)} pair(s) do not have exactly one raw and one stem row: " + "; ".join(described)
        )

    raw = df[roles == "raw"].set_index(pair_ids[roles == "raw"]).sort_index()
    stem = df[roles == "stem"].set_index(pair_ids[roles == "stem"]).reindex(raw.index)

    for side in (raw, stem):
        values = side[features].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            rows, cols = np.nonzero(bad)
            described = [
                f"{side.index[r]} ({side['role'].iloc[r]}): {features[c]}"
                for r, c in zip(rows[:10], cols[:10])
            ]
            raise ValueError(
                f"{bad.sum()} missing (NaN) or non-numeric/infinite feature value(s) in "
                f"{len(set(rows))} row(s), e.g. " + "; ".join(described)
            )

    if not (raw["multitrack"].astype(str).to_numpy() == stem["multitrack"].astype(str).to_numpy()).all():
        raise ValueError("raw and stem rows of a pair name different multitracks")

    if "split" in df.columns:
        split_raw = [_normalise_split(v) for v in raw["split"]]
        split_stem = [_normalise_split(v) for v in stem["split"]]
        if split_raw != split_stem:
            raise ValueError("raw and stem rows of a pair have different split values")
        bad_split = sorted({s for s in split_raw if s not in (None, "train", "test")})
        if bad_split:
            raise ValueError(f"split must be 'train', 'test' or empty, found: {bad_split}")
    else:
        split_raw = [None] * len(raw)

    return PairedData(
        X=raw[features].to_numpy(dtype=float),
        Y=stem[features].to_numpy(dtype=float),
        pairs=raw.index.to_numpy(dtype=object),
        multitracks=raw["multitrack"].astype(str).to_numpy(dtype=object),
        split=np.array(split_raw, dtype=object),
    )


# --------------------------------------------------------------------------------------------
# Train/test split and outliers


def split_train_test(
    multitracks: Sequence[str],
    split: Sequence[str | None] | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Indices of the training and test pairs, and where the split came from.

    A stored split (``split`` is "train" or "test" for every pair, with both present) is kept:
    source "stored". Otherwise a seeded GroupShuffleSplit holds out about ``test_fraction`` of
    the multitracks, so no multitrack has pairs on both sides: source "grouped-shuffle".

    Parameters
    ----------
    multitracks : sequence of str
        The multitrack of each pair.
    split : sequence of {"train", "test", None}, optional
        A stored split, one value per pair.
    test_fraction : float, default=0.1
        Fraction of the multitracks to hold out when a new split is made, in (0, 1).
    seed : int, default=0
        Seed of the new split.

    Returns
    -------
    train, test : ndarray of int
        Sorted indices of the training and of the test pairs.
    source : {"stored", "grouped-shuffle"}
        Where the split came from.

    Examples
    --------
    >>> from stemstore.analysis.regression import split_train_test
    >>> split_train_test(["m1", "m2", "m3"], ["train", "train", "test"])
    (array([0, 1]), array([2]), 'stored')
    >>> split_train_test(["m1", "m1", "m2", "m2", "m3", "m3"], test_fraction=0.3, seed=0)
    (array([0, 1, 2, 3]), array([4, 5]), 'grouped-shuffle')
    """
    multitracks = np.asarray(multitracks, dtype=object)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if split is not None:
        split = np.asarray(split, dtype=object)
        is_train, is_test = split == "train", split == "test"
        if (is_train | is_test).all() and is_train.any() and is_test.any():
            return np.flatnonzero(is_train), np.flatnonzero(is_test), "stored"

    n_groups = len(set(multitracks))
    if n_groups < 2:
        raise ValueError(
            "cannot hold out whole multitracks: all pairs come from one multitrack "
            "(store a train/test split instead)"
        )
    splitter = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
    train, test = next(splitter.split(np.zeros(len(multitracks)), groups=multitracks))
    return np.sort(train), np.sort(test), "grouped-shuffle"


def find_outliers(X: np.ndarray, Y: np.ndarray, n_sd: float = 3.0) -> np.ndarray:
    """Boolean mask of pairs with an input or target value more than ``n_sd`` sd from the mean.

    Mean and (population) standard deviation are computed per column of X and of Y over the
    pairs given, which should be the training pairs only. One pass, no iteration. A constant
    column flags nothing.

    Parameters
    ----------
    X, Y : ndarray of shape (n_pairs, n_features)
        Raw (input) and stem (target) values of the pairs.
    n_sd : float, default=3.0
        Distance from the mean, in standard deviations, beyond which a value is an outlier.

    Returns
    -------
    ndarray of bool, shape (n_pairs,)
        True for the pairs with at least one outlying value.

    Examples
    --------
    >>> import numpy as np
    >>> from stemstore.analysis.regression import find_outliers
    >>> X = np.array([[1.0], [1.1], [0.9], [1.0], [1.05], [0.95], [1.0], [1.1], [0.9], [1.0],
    ...               [1.0], [9.0]])
    >>> np.flatnonzero(find_outliers(X, 2 * X))
    array([11])
    """
    values = np.hstack([X, Y])
    mean = values.mean(axis=0)
    sd = values.std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, np.abs(values - mean) / np.where(sd > 0, sd, 1.0), 0.0)
    return (z > n_sd).any(axis=1)


def check_targets_vary(Y_train: np.ndarray, features: Sequence[str]) -> None:
    """Check that every target feature varies over the training pairs.

    A constant target cannot be learnt (and its mape is meaningless); the caller should drop it
    from the feature list.

    Parameters
    ----------
    Y_train : numpy.ndarray
        Training targets, (pairs x features).
    features : sequence of str
        The names of Y_train's columns.

    Raises
    ------
    ValueError
        Naming every target feature that is constant over the training pairs.
    """
    constant = [f for f, sd in zip(features, np.std(Y_train, axis=0)) if not sd > 0]
    if constant:
        raise ValueError(
            f"target feature(s) constant over the {len(Y_train)} training pairs, "
            f"cannot be learnt; drop them from the feature list: {', '.join(constant)}"
        )


# --------------------------------------------------------------------------------------------
# Models


def _make_model(name: str, params: Mapping[str, Any], seed: int, n_jobs: int | None) -> BaseEstimator:
    """One unfitted model of the five, with the given parameters of the model itself."""
    params = dict(params)
    if name == "svr":
        return MultiOutputRegressor(SVR(**params))
    if name == "rf":
        return RandomForestRegressor(random_state=seed, n_jobs=n_jobs, **params)
    if name == "knn":
        return KNeighborsRegressor(**params)  # Minkowski metric by default (p=2: Euclidean)
    if name == "pls":
        return PLSRegression(**params)
    if name == "lr":
        return LinearRegression(**params)
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")


def paper_hyperparameters(group: str) -> dict[str, dict[str, Any]]:
    """The study's hyperparameters for ``group`` (bass, guitar, vocal or keys)."""
    if group not in PAPER_HYPERPARAMETERS:
        raise ValueError(
            f"the 'paper' preset has hyperparameters only for groups "
            f"{', '.join(PAPER_HYPERPARAMETERS)}; got {group!r}. Use preset='tuned' for "
            "other groups."
        )
    return {m: dict(p) for m, p in PAPER_HYPERPARAMETERS[group].items()}


def build_paper_models(
    group: str, n_train: int, n_features: int, seed: int = 0, n_jobs: int | None = None
) -> tuple[dict[str, BaseEstimator], dict[str, dict[str, Any]], list[str]]:
    """Unfitted models with the study's hyperparameters for ``group``, inputs unscaled.

    The table is applied exactly; only when the data cannot take a value (more neighbours than
    training pairs, more PLS components than features) is it clipped, and a warning says so.

    Parameters
    ----------
    group : str
        A group of the study's hyperparameter table (bass, guitar, vocal, keys).
    n_train : int
        Number of training pairs.
    n_features : int
        Number of input (and target) features.
    seed : int, default=0
        Random state of the models that draw random numbers.
    n_jobs : int, optional
        Parallel jobs of the models that support them.

    Returns
    -------
    models : dict of str to estimator
        The five unfitted models, by name.
    hyperparameters : dict of str to dict
        The hyperparameters each model was given, by name.
    warnings : list of str
        One line per value that had to be clipped.
    """
    table = paper_hyperparameters(group)
    notes: list[str] = []
    knn = table["knn"]
    if knn["n_neighbors"] > n_train:
        notes.append(f"knn: n_neighbors {knn['n_neighbors']} > {n_train} training pairs, clipped")
        knn["n_neighbors"] = n_train
    pls = table["pls"]
    if pls["n_components"] > min(n_features, n_train - 1):
        clipped = max(1, min(n_features, n_train - 1))
        notes.append(f"pls: n_components {pls['n_components']} clipped to {clipped}")
        pls["n_components"] = clipped
    models = {name: _make_model(name, table[name], seed, n_jobs) for name in MODEL_NAMES}
    hyper = {name: dict(table[name]) for name in MODEL_NAMES}
    hyper["rf"]["random_state"] = seed
    return models, hyper, notes


def unfitted_model(
    name: str, preset: str, hyperparameters: Mapping[str, Any], seed: int, n_jobs: int | None = None
) -> BaseEstimator:
    """The unfitted estimator that a run's recorded hyperparameters describe.

    Fitting it on the run's training pairs gives the model the run fitted, bit for bit: this is
    how a stored run's models that were not kept as artefacts are rebuilt on demand.

    Parameters
    ----------
    name : {"svr", "rf", "knn", "pls", "lr"}
        The model.
    preset : {"paper", "tuned"}
        The run's preset: "paper" models are bare and unscaled, "tuned" ones sit in
        TransformedTargetRegressor(Pipeline(StandardScaler, model), StandardScaler).
    hyperparameters : mapping
        The model's own parameters as :class:`ModelResult` records them (a ``random_state``
        entry is the run's seed and is ignored in favour of ``seed``).
    seed : int
        The run's seed.
    n_jobs : int, optional
        Threads of a random forest's fit; the fitted trees do not depend on it.

    Returns
    -------
    estimator
        Unfitted; fit it with :func:`fit_deterministic`.

    Examples
    --------
    >>> from stemstore.analysis.regression import unfitted_model
    >>> unfitted_model("knn", "paper", {"n_neighbors": 6, "p": 2}, seed=0)
    KNeighborsRegressor(n_neighbors=6)
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    params = {k: v for k, v in hyperparameters.items() if k != "random_state"}
    if preset == "paper":
        return _make_model(name, params, seed, n_jobs)
    model = _tuned_pipeline(name, seed)
    # what GridSearchCV's refit does: the base pipeline with the best point of the grid set
    model.set_params(**{_TUNED_PREFIX[name] + k: v for k, v in params.items()})
    if name == "rf":
        model.set_params(regressor__model__n_jobs=n_jobs)
    return model


# scikit-learn's own lookup, kept to restore it after each block that caches it
_SKLEARN_PARAM_NAMES = BaseEstimator.__dict__.get("_get_param_names")


@functools.cache
def _param_names_of(cls: type) -> tuple[str, ...]:
    return tuple(_SKLEARN_PARAM_NAMES.__func__(cls))


def _remembered_param_names(cls: type) -> list[str]:
    return list(_param_names_of(cls))  # a fresh list per call, as scikit-learn returns


_REMEMBERED_PARAM_NAMES = classmethod(_remembered_param_names)


@contextlib.contextmanager
def _param_names_remembered():
    """Within the block, scikit-learn looks up each estimator class's parameter names once.

    scikit-learn reads an estimator's parameter names from its ``__init__`` signature
    (``inspect.signature``) on every ``get_params``, ``set_params`` and ``clone``: five times
    for each tree of a random forest, and again for every step of every pipeline a grid
    search clones. The names depend on the class alone, so inside the block they are
    remembered per class; fitted models and results are the same (a tuned run takes about
    0.8-0.9x the CPU). Only this process is affected; a grid search's worker processes get the
    same through :func:`_workers_remember_param_names`. Nested blocks are fine; the lookup is
    restored on exit.
    """
    if _SKLEARN_PARAM_NAMES is None or BaseEstimator.__dict__["_get_param_names"] is _REMEMBERED_PARAM_NAMES:
        yield  # a scikit-learn without this lookup, or an enclosing block (or worker) has it
        return
    BaseEstimator._get_param_names = _REMEMBERED_PARAM_NAMES
    try:
        yield
    finally:
        BaseEstimator._get_param_names = _SKLEARN_PARAM_NAMES


def _remember_param_names_in_worker() -> None:
    """Initializer of joblib's worker processes: their fits remember parameter names too."""
    BaseEstimator._get_param_names = _REMEMBERED_PARAM_NAMES


def _workers_remember_param_names(n_jobs: int | None):
    """joblib's default process pool with workers that remember parameter names (see
    :func:`_param_names_remembered`), for a search run in ``n_jobs`` > 1 processes (a tuned
    run with two jobs takes about 0.8-0.9x the time). A backend the caller chose, or configured, is
    left alone."""
    backend, _ = joblib.parallel.get_active_backend()
    if (
        n_jobs in (None, 1)
        or _SKLEARN_PARAM_NAMES is None
        or type(backend) is not joblib.parallel.LokyBackend
        or backend.backend_kwargs
    ):
        return contextlib.nullcontext()
    return joblib.parallel_config(backend="loky", initializer=_remember_param_names_in_worker)


def fit_deterministic(model: BaseEstimator, X: np.ndarray, Y: np.ndarray) -> BaseEstimator:
    """Fit ``model`` and leave it predicting in a fixed order, whatever its ``n_jobs``.

    A random forest's trees do not depend on ``n_jobs`` (each tree's seed is drawn before the
    trees are dispatched), but its ``predict`` with several threads adds the trees' predictions
    in whatever order the threads finish, so the last bits of the mean vary from call to call.
    After fitting, the forest (bare or inside the tuned pipeline) is set back to one thread so
    that its predictions, and so the run's metrics, are the same for a seed every time.

    Parameters
    ----------
    model : estimator
        One of the five models, bare (paper) or in the tuned pipeline.
    X, Y : ndarray
        Training inputs and targets.

    Returns
    -------
    estimator
        ``model``, fitted.
    """
    with _param_names_remembered():
        model.fit(X, Y)
    forests = [model] if isinstance(model, RandomForestRegressor) else []
    if isinstance(model, TransformedTargetRegressor):
        inner = model.regressor_.named_steps["model"]
        forests = [inner] if isinstance(inner, RandomForestRegressor) else []
    for forest in forests:
        forest.set_params(n_jobs=None)
    return model


def _tuned_pipeline(name: str, seed: int) -> TransformedTargetRegressor:
    """Scale inputs and targets inside the estimator, so the scalers are fitted per CV fold."""
    model = _make_model(name, {}, seed, n_jobs=None)
    return TransformedTargetRegressor(
        regressor=Pipeline([("scale", StandardScaler()), ("model", model)]),
        transformer=StandardScaler(),
    )


def _cross_validator(groups: np.ndarray, seed: int):
    """GroupKFold by multitrack when there are enough multitracks, else shuffled KFold."""
    n_groups = len(set(groups))
    if n_groups >= CV_FOLDS:
        return GroupKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed), "GroupKFold"
    n_splits = min(CV_FOLDS, len(groups))
    return KFold(n_splits=n_splits, shuffle=True, random_state=seed), "KFold"


def _fit_grid_limits(grid: dict[str, list], name: str, n_fold_train: int, n_features: int) -> dict[str, list]:
    """Drop grid values the smallest CV training fold cannot take."""
    grid = {k: list(v) for k, v in grid.items()}
    if name == "knn" and "n_neighbors" in grid:
        grid["n_neighbors"] = [k for k in grid["n_neighbors"] if k <= n_fold_train] or [n_fold_train]
    if name == "pls" and "n_components" in grid:
        limit = max(1, min(n_features, n_fold_train - 1))
        grid["n_components"] = [k for k in grid["n_components"] if k <= limit] or [1]
    return grid


def json_safe(value: Any) -> Any:
    """Plain Python types for a hyperparameter value (numpy scalars become int/float).

    Parameters
    ----------
    value : object
        A hyperparameter value, or a list, tuple or dict of them.

    Returns
    -------
    object
        The same value with numpy scalars as Python numbers, tuples as lists, dict keys as
        strings and anything else not JSON-able as its ``repr``.

    Examples
    --------
    >>> import numpy as np
    >>> from stemstore.analysis.regression import json_safe
    >>> json_safe({"C": np.float64(1.5), "p": (1, np.int64(2)), 3: None})
    {'C': 1.5, 'p': [1, 2], '3': None}
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def fit_tuned_models(
    X_train: np.ndarray,
    Y_train: np.ndarray,
    groups: np.ndarray,
    seed: int = 0,
    n_jobs: int | None = None,
    grids: Mapping[str, Mapping[str, list]] | None = None,
) -> tuple[dict[str, BaseEstimator], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Tune each model by grid search with 5-fold cross-validation and refit it on all of X_train.

    Parameters
    ----------
    X_train, Y_train : numpy.ndarray
        Training inputs (raw values) and targets (stem values), (pairs x features).
    groups : numpy.ndarray
        Each training pair's multitrack, so that folds keep a multitrack's pairs together.
    seed : int, default=0
        Seed of the folds and of the models that draw random numbers.
    n_jobs : int, optional
        Parallel jobs of the grid searches.
    grids : mapping, optional
        Overrides :data:`TUNED_GRIDS` per model, with the parameter names of the model itself,
        e.g. ``{"svr": {"C": [1.0]}}``.

    Returns
    -------
    fitted : dict of str to estimator
        The refitted estimators, each TransformedTargetRegressor(Pipeline(StandardScaler,
        model), StandardScaler).
    hyperparameters : dict of str to dict
        The chosen hyperparameters of each model.
    cv_records : dict of str to dict
        Each model's cross-validation record (folds, grid, scores).
    """
    overridden = set(grids or ())
    grids = {**TUNED_GRIDS, **(dict(grids) if grids else {})}
    if not (np.isfinite(X_train).all() and np.isfinite(Y_train).all()):
        raise ValueError("X_train and Y_train must be finite (no NaN or infinite values)")
    cv, cv_name = _cross_validator(groups, seed)
    fold_train_sizes = [len(tr) for tr, _ in cv.split(X_train, Y_train, groups=groups)]
    n_fold_train = min(fold_train_sizes)

    fitted, hyper, cv_records = {}, {}, {}
    for name in MODEL_NAMES:
        grid = _fit_grid_limits(grids.get(name, {}), name, n_fold_train, X_train.shape[1])
        prefix = _TUNED_PREFIX[name]
        search = GridSearchCV(
            _tuned_pipeline(name, seed),
            param_grid={prefix + k: v for k, v in grid.items()},
            scoring=CV_SCORING,
            cv=cv,
            n_jobs=n_jobs,
            error_score="raise",  # a failing fit is a bug to see, not a NaN to average over
        )
        # The data are checked finite above and the preset's own grids are valid, so scikit-learn
        # need not check them again in each of a search's hundreds of fits (about a tenth of a
        # tuned run); a grid the caller overrides is still checked.
        checks_off = sklearn.config_context(
            assume_finite=True, skip_parameter_validation=name not in overridden
        )
        with (
            warnings.catch_warnings(),
            checks_off,
            _param_names_remembered(),
            _workers_remember_param_names(n_jobs),
        ):
            # Sigmoid-kernel SVR on some grid points converges slowly; that is what the grid is for.
            warnings.filterwarnings("ignore", category=UserWarning, module="sklearn.svm")
            search.fit(X_train, Y_train, groups=groups)
        fitted[name] = search.best_estimator_
        best = {k[len(prefix) :]: json_safe(v) for k, v in search.best_params_.items()}
        if name == "rf":
            best["random_state"] = seed
        hyper[name] = best
        results = search.cv_results_
        cv_records[name] = {
            "scoring": "mape",
            "cv": cv_name,
            "n_splits": len(fold_train_sizes),
            "grid": json_safe(grid),
            "best_mape": float(-search.best_score_),
            "best_mape_sd": float(results["std_test_score"][search.best_index_]),
            "candidates": [
                {
                    "params": {k[len(prefix) :]: json_safe(v) for k, v in p.items()},
                    "mape": float(-m),
                    "mape_sd": float(s),
                }
                for p, m, s in zip(results["params"], results["mean_test_score"], results["std_test_score"])
            ],
        }
    return fitted, hyper, cv_records


def _predict_2d(estimator: BaseEstimator, X: np.ndarray) -> np.ndarray:
    """Predictions as (n_samples, n_targets), whatever shape the estimator returns."""
    y = np.asarray(estimator.predict(X), dtype=float)
    return y.reshape(len(X), -1)


class AveragingRegressor(RegressorMixin, BaseEstimator):
    """The mean of the predictions of several regressors (the study's ensemble).

    :meth:`fit` fits a clone of each estimator on the same data; :meth:`predict` averages
    their predictions. To wrap estimators that are already fitted (what
    :func:`run_regression` does), use :meth:`from_fitted`.

    Parameters
    ----------
    estimators : sequence of (str, estimator) tuples, default=()
        The named regressors to average. At least one is needed to fit.

    Attributes
    ----------
    estimators_ : list of (str, estimator) tuples
        The fitted regressors.
    n_features_in_ : int
        Number of features seen during :meth:`fit`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> from sklearn.neighbors import KNeighborsRegressor
    >>> from stemstore.analysis.regression import AveragingRegressor
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array([0.0, 2.0, 4.0, 6.0])
    >>> averaging = AveragingRegressor([("lr", LinearRegression()),
    ...                                 ("knn", KNeighborsRegressor(n_neighbors=1))])
    >>> averaging.fit(X, y).predict([[1.0], [2.4]]).round(3)
    array([2. , 4.4])
    """

    def __init__(self, estimators: Sequence[tuple[str, BaseEstimator]] = ()):
        self.estimators = estimators

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # the study's targets are several stem features
        return tags

    def fit(self, X, y):
        """Fit a clone of every estimator on X and y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Training targets.

        Returns
        -------
        self : AveragingRegressor
            The fitted ensemble.
        """
        if not self.estimators:
            raise ValueError("AveragingRegressor needs at least one estimator")
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        self._single_target = np.ndim(y) == 1
        self.estimators_ = [(name, clone(est).fit(X, y)) for name, est in self.estimators]
        return self

    @classmethod
    def from_fitted(cls, estimators: Sequence[tuple[str, BaseEstimator]]) -> AveragingRegressor:
        """An AveragingRegressor over estimators that are already fitted (not refitted).

        Parameters
        ----------
        estimators : sequence of (str, estimator) tuples
            Fitted regressors, all trained on the same features.

        Returns
        -------
        averaging : AveragingRegressor
            Ready to predict; ``n_features_in_`` is the first estimator's (None if unknown).
            Its predictions are always 2-D, (n_samples, n_targets).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.linear_model import LinearRegression
        >>> from stemstore.analysis.regression import AveragingRegressor
        >>> X, Y = np.arange(8.0).reshape(4, 2), np.arange(4.0).reshape(4, 1)
        >>> lr = LinearRegression().fit(X, Y)
        >>> AveragingRegressor.from_fitted([("lr", lr)]).predict(X[:2]).round(3)
        array([[0.],
               [1.]])
        """
        estimators = list(estimators)
        if not estimators:
            raise ValueError("AveragingRegressor needs at least one estimator")
        averaging = cls(estimators=estimators)
        averaging.estimators_ = estimators
        averaging.n_features_in_ = getattr(estimators[0][1], "n_features_in_", None)
        return averaging

    def predict(self, X):
        """The mean of the estimators' predictions.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Averaged predictions: 1-D when :meth:`fit` was given a 1-D ``y``, otherwise 2-D.
        """
        check_is_fitted(self, "estimators_")
        if getattr(self, "n_features_in_", None) is None:  # from_fitted on estimators that do not say
            X = check_array(X, dtype=float)
        else:
            X = validate_data(self, X, reset=False, dtype=float)
        mean = np.mean([_predict_2d(est, X) for _, est in self.estimators_], axis=0)
        return mean.ravel() if getattr(self, "_single_target", False) else mean


# --------------------------------------------------------------------------------------------
# Metrics and the ensemble


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, features: Sequence[str]) -> pd.DataFrame:
    """Per target feature: mape, mae and the number of zero targets ("Table 6").

    mape(f) = mean |y_true - y_pred| / |y_true|, mae(f) = mean |y_true - y_pred| over the test
    pairs. A feature with a zero true value has mape = inf (the ratio is undefined) and
    ``n_zero_targets`` says how many zeros there were.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_pairs, n_features)
        True and predicted stem values of the test pairs.
    features : sequence of str
        Names of the target features, one per column.

    Returns
    -------
    DataFrame
        Index ``feature``; columns ``mape``, ``mae`` and ``n_zero_targets``.

    Examples
    --------
    >>> import numpy as np
    >>> from stemstore.analysis.regression import regression_metrics
    >>> metrics = regression_metrics(np.array([[1.0, 0.0], [2.0, 4.0]]),
    ...                              np.array([[1.5, 1.0], [2.0, 3.0]]), ["a", "b"])
    >>> metrics["mape"].tolist(), metrics["mae"].tolist(), metrics["n_zero_targets"].tolist()
    ([0.25, inf], [0.25, 1.0], [0, 1])
    """
    y_true = np.asarray(y_true, dtype=float).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=float).reshape(len(y_pred), -1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shape mismatch: y_true {y_true.shape}, y_pred {y_pred.shape}")
    if y_true.shape[1] != len(features):
        raise ValueError(f"{y_true.shape[1]} target columns but {len(features)} feature names")
    if len(y_true) == 0:
        raise ValueError("no test pairs to evaluate")
    error = np.abs(y_true - y_pred)
    zeros = (y_true == 0).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = error / np.abs(y_true)
    mape = np.where(zeros > 0, np.inf, np.nanmean(np.where(y_true == 0, np.nan, ratio), axis=0))
    return pd.DataFrame(
        {"mape": mape, "mae": error.mean(axis=0), "n_zero_targets": zeros.astype(int)},
        index=pd.Index(list(features), name="feature"),
    )


def _mape_per_feature(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        mape = (np.abs(y_true - y_pred) / np.abs(y_true)).mean(axis=0)
    return np.where((y_true == 0).any(axis=0), np.inf, mape)


@dataclass
class EnsembleResult:
    """The "Table 7" choice: the model or average of models with the smallest a-mape.

    ``candidates`` has one row per single model and per average of two or more models
    (columns ``models`` (tuple of names), ``n_models``, ``a_mape``), best first. When no feature
    passes the threshold, ``models`` is empty and ``a_mape`` is NaN.
    """

    kept_features: list[str]
    dropped_features: list[str]
    models: tuple[str, ...]
    a_mape: float
    threshold: float
    best_mape_per_feature: dict[str, float]
    candidates: pd.DataFrame

    @property
    def is_average(self) -> bool:
        return len(self.models) > 1

    def to_dict(self) -> dict[str, Any]:
        """The choice and every candidate's a-mape as plain JSON-able types (inf stays a float)."""
        return {
            "kept_features": list(self.kept_features),
            "dropped_features": list(self.dropped_features),
            "models": list(self.models),
            "a_mape": self.a_mape,
            "threshold": self.threshold,
            "best_mape_per_feature": dict(self.best_mape_per_feature),
            "candidates": [
                {"models": list(row.models), "a_mape": float(row.a_mape)}
                for row in self.candidates.itertuples(index=False)
            ],
        }


def search_ensemble(
    predictions: Mapping[str, np.ndarray],
    y_test: np.ndarray,
    features: Sequence[str],
    threshold: float = 0.5,
) -> EnsembleResult:
    """Pick the model or average of models' predictions with the smallest a-mape.

    ``predictions`` maps model name to its test predictions (n_test, n_features), aligned with
    ``y_test``. Target features whose best mape over the single models exceeds ``threshold``
    (or is infinite, i.e. a zero target) are dropped; every single model and every average of
    two or more models is scored by a-mape = mean mape over the kept features. Ties go to fewer
    models, then to the order of ``predictions``.

    Parameters
    ----------
    predictions : mapping of str to ndarray of shape (n_test, n_features)
        Each model's predictions of the test pairs.
    y_test : array-like of shape (n_test, n_features)
        The true stem values.
    features : sequence of str
        Names of the target features.
    threshold : float, default=0.5
        Largest best-model mape for a feature to be kept.

    Returns
    -------
    EnsembleResult
        The chosen models, their a-mape, the kept and dropped features and every candidate.

    Examples
    --------
    Two models with opposite errors: their average is exact.

    >>> import numpy as np
    >>> from stemstore.analysis.regression import search_ensemble
    >>> choice = search_ensemble({"lr": np.array([[1.1], [2.2]]), "knn": np.array([[0.9], [1.8]])},
    ...                          np.array([[1.0], [2.0]]), ["a"])
    >>> choice.models, round(choice.a_mape, 6), choice.kept_features
    (('lr', 'knn'), 0.0, ['a'])
    """
    names = list(predictions)
    if not names:
        raise ValueError("no predictions to choose from")
    y_test = np.asarray(y_test, dtype=float).reshape(len(y_test), -1)
    preds = {n: np.asarray(predictions[n], dtype=float).reshape(y_test.shape) for n in names}
    features = list(features)

    per_model = np.vstack([_mape_per_feature(y_test, preds[n]) for n in names])
    best_per_feature = per_model.min(axis=0)
    kept = np.flatnonzero(best_per_feature <= threshold)  # inf and NaN are never kept

    rows = []
    if len(kept):
        for size in range(1, len(names) + 1):
            for combo in itertools.combinations(names, size):
                averaged = np.mean([preds[n] for n in combo], axis=0)
                a_mape = float(_mape_per_feature(y_test[:, kept], averaged[:, kept]).mean())
                rows.append({"models": combo, "n_models": size, "a_mape": a_mape})
    candidates = pd.DataFrame(rows, columns=["models", "n_models", "a_mape"])
    if len(candidates):
        # Stable sort keeps combinations order within equal (a_mape, n_models).
        candidates = candidates.sort_values(["a_mape", "n_models"], kind="stable").reset_index(drop=True)
        models, a_mape = candidates.loc[0, "models"], float(candidates.loc[0, "a_mape"])
    else:
        models, a_mape = (), float("nan")
    return EnsembleResult(
        kept_features=[features[i] for i in kept],
        dropped_features=[f for i, f in enumerate(features) if i not in set(kept)],
        models=tuple(models),
        a_mape=a_mape,
        threshold=threshold,
        best_mape_per_feature={f: float(v) for f, v in zip(features, best_per_feature)},
        candidates=candidates,
    )


# --------------------------------------------------------------------------------------------
# The whole run


@dataclass
class ModelResult:
    """One fitted model of a run and its test scores."""

    name: str
    estimator: BaseEstimator  #: fitted on the training pairs (outliers removed)
    hyperparameters: dict[str, Any]  #: JSON-able
    cv: dict[str, Any] | None  #: cross-validation record (tuned preset), JSON-able; None for paper
    metrics: pd.DataFrame  #: index feature; columns mape, mae, n_zero_targets
    predictions: pd.DataFrame  #: long: pair, multitrack, feature, raw, stem, predicted


@dataclass
class RegressionResult:
    """Everything one regression run produced, for the store to persist."""

    group: str
    preset: str
    outliers: str
    seed: int
    test_fraction: float
    features: list[str]
    split_source: str  #: "stored" (the table's split) or "grouped-shuffle"
    train_pairs: list[str]  #: training pairs actually used (outliers removed)
    test_pairs: list[str]
    removed_outlier_pairs: list[str]
    models: dict[str, ModelResult]
    ensemble: EnsembleResult
    #: the chosen model or AveragingRegressor (None when no feature passed the threshold)
    best_estimator: BaseEstimator | None
    warnings: list[str] = field(default_factory=list)

    def metrics_table(self) -> pd.DataFrame:
        """Table 6 in long form: model, feature, mape, mae, n_zero_targets."""
        frames = [m.metrics.reset_index().assign(model=name) for name, m in self.models.items()]
        table = pd.concat(frames, ignore_index=True)
        return table[["model", "feature", "mape", "mae", "n_zero_targets"]]

    def parameters(self) -> dict[str, Any]:
        """The run's parameters and hyperparameters, JSON-able (for the store's run record)."""
        return {
            "group": self.group,
            "preset": self.preset,
            "outliers": self.outliers,
            "seed": self.seed,
            "test_fraction": self.test_fraction,
            "features": list(self.features),
            "split_source": self.split_source,
            "ensemble_threshold": self.ensemble.threshold,
            "hyperparameters": {n: m.hyperparameters for n, m in self.models.items()},
        }


def _long_predictions(
    data: PairedData, test: np.ndarray, y_pred: np.ndarray, features: list[str]
) -> pd.DataFrame:
    n_test, n_features = len(test), len(features)
    return pd.DataFrame(
        {
            "pair": np.repeat(data.pairs[test], n_features),
            "multitrack": np.repeat(data.multitracks[test], n_features),
            "feature": np.tile(features, n_test),
            "raw": data.X[test].ravel(),
            "stem": data.Y[test].ravel(),
            "predicted": y_pred.ravel(),
        }
    )


def run_regression(
    pairs_df: pd.DataFrame,
    features: Sequence[str] | None,
    group: str,
    preset: str = "tuned",
    outliers: str = "3sigma",
    test_fraction: float = 0.1,
    seed: int = 0,
    n_jobs: int | None = None,
    grids: Mapping[str, Mapping[str, list]] | None = None,
    ensemble_threshold: float = 0.5,
) -> RegressionResult:
    """Fit and evaluate the five models on one group's pairs (docs/method.md, section 5).

    Parameters
    ----------
    pairs_df : pandas.DataFrame
        The group's segments, one row each, as :func:`pairs_to_xy` reads them.
    features : sequence of str or None
        The f_pred features (inputs and targets); None takes every feature column of
        ``pairs_df``.
    group : str
        The group; with ``preset="paper"`` it chooses the row of the hyperparameter table.
    preset : {"tuned", "paper"}, default="tuned"
        "paper" uses the study's hyperparameter table for ``group`` (bass, guitar, vocal,
        keys) on unscaled data; "tuned" grid-searches each model (see :data:`TUNED_GRIDS`).
    outliers : {"3sigma", "none"}, default="3sigma"
        "3sigma" removes training pairs with a value more than 3 sd from its feature's training
        mean; "none" keeps all.
    test_fraction : float, default=0.1
        Share of the pairs held out for testing.
    seed : int, default=0
        Seed of the split, the folds and the models.
    n_jobs : int, optional
        Parallel jobs of the models and grid searches.
    grids : mapping, optional
        Overrides of :data:`TUNED_GRIDS` for the "tuned" preset.
    ensemble_threshold : float, default=0.5
        A target feature is kept for choosing the best model or average when its best mape over
        the single models is at most this.

    Returns
    -------
    RegressionResult
        Per model and target feature the metrics on the test pairs, the fitted models, the best
        model or average over the kept features, and the split, hyperparameters and warnings.

    Raises
    ------
    ValueError
        For an unknown preset or outlier rule, too few pairs, or a constant target feature.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    if outliers not in OUTLIER_RULES:
        raise ValueError(f"unknown outlier rule {outliers!r}; expected one of {', '.join(OUTLIER_RULES)}")
    if preset == "paper":
        paper_hyperparameters(group)  # fail on an unknown group before any work

    data = pairs_to_xy(pairs_df, features)
    features = list(feature_columns(pairs_df) if features is None else features)
    if len(data.pairs) < MIN_PAIRS:
        raise ValueError(
            f"only {len(data.pairs)} complete pair(s) for group {group!r}; at least {MIN_PAIRS} "
            "are needed for a training and a test set"
        )
    notes: list[str] = []

    train, test, split_source = split_train_test(data.multitracks, data.split, test_fraction, seed)
    if split_source == "grouped-shuffle" and any(s is not None for s in data.split):
        notes.append(
            "stored split incomplete (not every pair is train/test, or one side empty); "
            "made a new grouped split"
        )

    removed: list[str] = []
    if outliers == "3sigma":
        is_outlier = find_outliers(data.X[train], data.Y[train], n_sd=3.0)
        removed = [str(p) for p in data.pairs[train][is_outlier]]
        train = train[~is_outlier]
    if len(train) < 2:
        raise ValueError(f"only {len(train)} training pair(s) left after the split and outlier removal")
    X_train, Y_train = data.X[train], data.Y[train]
    check_targets_vary(Y_train, features)

    with warnings.catch_warnings():
        # one target feature is a column vector on purpose: every model gets 2-D targets
        warnings.filterwarnings("ignore", category=DataConversionWarning)
        if preset == "paper":
            models, hyper, clip_notes = build_paper_models(group, len(train), len(features), seed, n_jobs)
            notes.extend(clip_notes)
            cv_records: dict[str, Any] = {name: None for name in MODEL_NAMES}
            for model in models.values():
                fit_deterministic(model, X_train, Y_train)
        else:
            models, hyper, cv_records = fit_tuned_models(
                X_train, Y_train, data.multitracks[train], seed=seed, n_jobs=n_jobs, grids=grids
            )

    X_test, Y_test = data.X[test], data.Y[test]
    results, predictions = {}, {}
    for name in MODEL_NAMES:
        y_pred = _predict_2d(models[name], X_test)
        predictions[name] = y_pred
        results[name] = ModelResult(
            name=name,
            estimator=models[name],
            hyperparameters=json_safe(hyper[name]),
            cv=cv_records[name],
            metrics=regression_metrics(Y_test, y_pred, features),
            predictions=_long_predictions(data, test, y_pred, features),
        )
    zeros = int((Y_test == 0).sum())
    if zeros:
        notes.append(f"{zeros} zero target value(s) in the test set: mape is inf for those features")

    ensemble = search_ensemble(predictions, Y_test, features, threshold=ensemble_threshold)
    if not ensemble.models:
        best = None
        notes.append(f"no target feature has best mape <= {ensemble_threshold}: no ensemble chosen")
    elif len(ensemble.models) == 1:
        best = models[ensemble.models[0]]
    else:
        best = AveragingRegressor.from_fitted([(n, models[n]) for n in ensemble.models])

    return RegressionResult(
        group=group,
        preset=preset,
        outliers=outliers,
        seed=seed,
        test_fraction=test_fraction,
        features=features,
        split_source=split_source,
        train_pairs=[str(p) for p in data.pairs[train]],
        test_pairs=[str(p) for p in data.pairs[test]],
        removed_outlier_pairs=removed,
        models=results,
        ensemble=ensemble,
        best_estimator=best,
        warnings=notes,
    )


# --------------------------------------------------------------------------------------------
# Prediction and persistence


def predict_stem(
    model: BaseEstimator,
    raw_values: Sequence[float] | Mapping[str, float] | pd.Series | np.ndarray,
    features: Sequence[str] | None = None,
) -> np.ndarray:
    """Predicted stem feature values for one raw recording (or several, as a 2-D array).

    ``raw_values`` is the raw segment's values of the model's features, in the order the model
    was trained with; a dict or Series is reordered by ``features`` when given. Returns a 1-D
    array for one recording, 2-D for several.

    Parameters
    ----------
    model : estimator
        A fitted regressor (or :class:`AveragingRegressor`) from raw to stem values.
    raw_values : sequence, mapping, Series or ndarray
        One recording's raw values (1-D), several recordings' (2-D), or a dict/Series by name.
    features : sequence of str, optional
        The model's features in training order; needed for a dict or Series.

    Returns
    -------
    ndarray
        Predicted stem values: shape (n_targets,) for one recording, (n, n_targets) for several.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> from stemstore.analysis.regression import predict_stem
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [2.0, 1.0]])
    >>> model = LinearRegression().fit(X, 2 * X)
    >>> predict_stem(model, {"b": 3.0, "a": 1.0}, features=["a", "b"]).round(6)
    array([2., 6.])
    """
    if isinstance(raw_values, (Mapping, pd.Series)):
        if features is None:
            raise ValueError("pass features= to read a dict or Series of raw values in model order")
        missing = [f for f in features if f not in raw_values]
        if missing:
            raise ValueError(f"raw values lack feature(s): {', '.join(missing)}")
        raw_values = [raw_values[f] for f in features]
    values = np.asarray(raw_values, dtype=float)
    single = values.ndim == 1
    values = values.reshape(1, -1) if single else values
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and values.shape[1] != expected:
        raise ValueError(f"model expects {expected} raw feature values, got {values.shape[1]}")
    if not np.isfinite(values).all():
        raise ValueError("raw values contain NaN or infinite numbers")
    predicted = _predict_2d(model, values)
    return predicted[0] if single else predicted


class PackedForest:
    """A fitted RandomForestRegressor as a handful of arrays, for skops to write quickly.

    skops writes every tree of a forest as its own objects and arrays, and its bookkeeping per
    object (a JSON schema written by the pure-Python encoder, a zip member per array) made a
    1000-tree forest take seconds to store, far longer than fitting it. The trees of a forest
    differ only in their seed and their node and value arrays, so this keeps the forest without
    its trees, the trees' common parameters once, and the node and value arrays of all the trees
    concatenated. :meth:`unpack` rebuilds the very same forest (same trees, same arrays, same
    predictions to the bit). Nothing here is code: loading it runs sklearn's own Tree state
    checks on the arrays, as skops does for a forest written tree by tree.
    """

    def __init__(self, forest: RandomForestRegressor):
        trees = forest.estimators_
        first = trees[0]
        self.forest = copy.copy(forest)
        self.forest.estimators_ = []
        #: parameters and fitted attributes every tree shares (all but random_state and tree_)
        self.tree_params = {k: v for k, v in vars(first).items() if k not in ("random_state", "tree_")}
        _, self.tree_args, _ = first.tree_.__reduce__()  # Tree(n_features, n_classes, n_outputs)
        self.random_states = np.array([t.random_state for t in trees], dtype=np.int64)
        states = [t.tree_.__getstate__() for t in trees]
        self.max_depths = np.array([st["max_depth"] for st in states], dtype=np.int64)
        self.node_counts = np.array([st["node_count"] for st in states], dtype=np.int64)
        self.nodes = np.concatenate([st["nodes"] for st in states])
        self.values = np.concatenate([st["values"] for st in states])

    @staticmethod
    def can_pack(forest: Any) -> bool:
        """True for a fitted forest whose trees share every parameter but the seed."""
        trees = getattr(forest, "estimators_", None)
        if not isinstance(forest, RandomForestRegressor) or not trees:
            return False
        common = {k: v for k, v in vars(trees[0]).items() if k not in ("random_state", "tree_")}
        return all(
            {k: v for k, v in vars(t).items() if k not in ("random_state", "tree_")} == common for t in trees
        )

    def unpack(self) -> RandomForestRegressor:
        """The forest, with its trees rebuilt from the arrays."""
        from sklearn.tree import DecisionTreeRegressor
        from sklearn.tree._tree import Tree

        forest = copy.copy(self.forest)
        ends = np.cumsum(self.node_counts)
        trees = []
        for seed, depth, count, end in zip(self.random_states, self.max_depths, self.node_counts, ends):
            tree = DecisionTreeRegressor.__new__(DecisionTreeRegressor)
            tree.__dict__.update(self.tree_params)
            tree.random_state = int(seed)
            tree.tree_ = Tree(*self.tree_args)
            tree.tree_.__setstate__(
                {
                    "max_depth": int(depth),
                    "node_count": int(count),
                    "nodes": self.nodes[end - count : end],
                    "values": self.values[end - count : end],
                }
            )
            trees.append(tree)
        forest.estimators_ = trees
        return forest


def _map_forests(model: Any, fn) -> Any:
    """``model`` with ``fn`` applied to each fitted forest in it: the model itself, an
    AveragingRegressor's members, the model step of the tuned pipeline. Containers on the way
    are shallow copies; ``model`` itself is not changed."""
    if isinstance(model, (RandomForestRegressor, PackedForest)):
        return fn(model)
    if isinstance(model, AveragingRegressor):
        out = copy.copy(model)
        out.estimators = [(n, _map_forests(e, fn)) for n, e in model.estimators]
        if hasattr(model, "estimators_"):
            out.estimators_ = [(n, _map_forests(e, fn)) for n, e in model.estimators_]
        return out
    if isinstance(model, TransformedTargetRegressor) and hasattr(model, "regressor_"):
        out = copy.copy(model)
        out.regressor_ = _map_forests(model.regressor_, fn)
        return out
    if isinstance(model, Pipeline):
        out = copy.copy(model)
        out.steps = [(n, _map_forests(e, fn)) for n, e in model.steps]
        return out
    return model


def _packed(model: BaseEstimator) -> Any:
    return _map_forests(model, lambda f: PackedForest(f) if PackedForest.can_pack(f) else f)


def _unpacked(model: Any) -> BaseEstimator:
    return _map_forests(model, lambda f: f.unpack() if isinstance(f, PackedForest) else f)


#: Types a saved stemstore model may contain beyond what skops trusts by default. Loading
#: refuses anything else, so a tampered file cannot make us import arbitrary code.
TRUSTED_MODEL_TYPES = frozenset(
    {
        "stemstore.analysis.regression.AveragingRegressor",
        "stemstore.analysis.regression.PackedForest",
        "sklearn.compose._target.TransformedTargetRegressor",
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.multioutput.MultiOutputRegressor",
        "sklearn.svm._classes.SVR",
        "sklearn.ensemble._forest.RandomForestRegressor",
        "sklearn.tree._classes.DecisionTreeRegressor",
        "sklearn.tree._tree.Tree",
        "sklearn.neighbors._regression.KNeighborsRegressor",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        # KNN's Minkowski metric family: p=2, p=1, other p.
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.cross_decomposition._pls.PLSRegression",
        "sklearn.linear_model._base.LinearRegression",
    }
)


def _skops_io():
    """``skops.io``, imported without scikit-learn's estimator discovery.

    At import skops lists scikit-learn's estimators as default trusted types by calling
    ``sklearn.utils.all_estimators()``, which imports every scikit-learn module: about 1 s of a
    ``regress`` run. stemstore never relies on that default: every load asks skops which types
    it does not trust and refuses any of them outside :data:`TRUSTED_MODEL_TYPES`. With the
    default empty, scikit-learn's types go through that check too, so loading is as strict or
    stricter; the bytes written are the same.
    """
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    import scipy.special  # noqa: F401  (loaded, so that its modules can be listed first)
    import sklearn.utils

    # skops also names the module of each of scipy's ~400 ufuncs by searching sys.modules, in
    # order, for the first module holding it: 0.8 s in a `regress` process, which has ~2000
    # modules loaded before scipy.special. Listed first, scipy.special's own modules end each
    # search at once; the names found are the same, only the order of sys.modules changes.
    _list_modules_first(lambda name: name == "scipy.special" or name.startswith("scipy.special."))
    discover = sklearn.utils.all_estimators
    sklearn.utils.all_estimators = lambda *args, **kwargs: []
    try:
        import skops.io
    finally:
        sklearn.utils.all_estimators = discover
    return skops.io


def _list_modules_first(selected: Callable[[str], bool]) -> None:
    """Reorder ``sys.modules`` so that the modules whose names are ``selected`` come first.

    The dict is emptied and refilled in one call each; the refill runs even if a signal
    arrives after the emptying.
    """
    reordered = {name: module for name, module in sys.modules.items() if selected(name)}
    reordered.update(sys.modules)  # the others, after them, in their order
    try:
        sys.modules.clear()
    finally:
        sys.modules.update(reordered)


def save_model(model: BaseEstimator, path: str | Path) -> Path:
    """Save a fitted model (or AveragingRegressor) with skops.

    Parameters
    ----------
    model : estimator
        A fitted model of :data:`MODEL_NAMES` or an :class:`AveragingRegressor` of them.
    path : str or pathlib.Path
        Where to write; missing parent directories are made.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    sio = _skops_io()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sio.dump(_packed(model), path)
    return path


def model_to_bytes(model: BaseEstimator) -> bytes:
    """A fitted model (or AveragingRegressor) as skops bytes, for a database column.

    Random forests are written as :class:`PackedForest` (a few arrays instead of objects per
    tree), and the bytes deflated at level 1 (a 1000-tree forest shrinks about five-fold)."""
    import zipfile

    sio = _skops_io()

    return sio.dumps(_packed(model), compression=zipfile.ZIP_DEFLATED, compresslevel=1)


def model_from_bytes(data: bytes) -> BaseEstimator:
    """Load skops bytes written by :func:`model_to_bytes`, trusting only
    :data:`TRUSTED_MODEL_TYPES`. Raises ValueError naming any other type the bytes ask for."""
    sio = _skops_io()

    data = bytes(data)
    untrusted = sio.get_untrusted_types(data=data)
    unexpected = sorted(t for t in untrusted if t not in TRUSTED_MODEL_TYPES)
    if unexpected:
        raise ValueError(
            f"refusing to load a stored model: it contains unexpected type(s) {', '.join(unexpected)}"
        )
    return _unpacked(sio.loads(data, trusted=list(untrusted)))


def load_model(path: str | Path) -> BaseEstimator:
    """Load a model saved by :func:`save_model`, trusting only :data:`TRUSTED_MODEL_TYPES`.

    Raises ValueError naming any other type the file asks for.
    """
    sio = _skops_io()

    untrusted = sio.get_untrusted_types(file=path)
    unexpected = sorted(t for t in untrusted if t not in TRUSTED_MODEL_TYPES)
    if unexpected:
        raise ValueError(f"refusing to load {path}: it contains unexpected type(s) {', '.join(unexpected)}")
    return _unpacked(sio.load(path, trusted=list(untrusted)))
