"""Regression runs in the store (docs/method.md, section 5): fit, record, and predict from stored models.

:mod:`stemstore.analysis.regression` is the pure library (DataFrames in, a RegressionResult out); this
module connects it to a store:

* :func:`regress` reads a group's pairs, runs the regression and records a ``regression`` run:
  its parameters and seed, the snapshot of segments it used (``run_segments``: split, and
  ``excluded = 'outlier'`` for removed training pairs), per model the hyperparameters and
  cross-validation record (``regression_models``), per-feature mape/mae (``regression_metrics``),
  the test predictions (``regression_predictions``) and every ensemble candidate with the best
  one marked (``regression_ensembles``). Only the best model is stored as skops bytes (column
  ``artifact``); when the best is an average of models, that AveragingRegressor is stored, as
  model ``ensemble``. The other models' ``artifact`` is NULL: :func:`run_model` refits them on
  demand from the recorded seed, hyperparameters and split, bit for bit (it checks the refit
  against the stored test predictions). Serialising every model cost seconds per run (a
  1000-tree forest takes skops longer to write than all five models take to fit).
  The results and the run's status are written in one transaction at the end: a failure leaves a
  ``failed`` run with its message and no partial results.
* :func:`run_model` gives any model of a run: its stored artefact, or a verified refit.
* :func:`predict` analyses a raw recording as raw tracks are analysed (docs/method.md, section 2)
  and predicts the stem's values of the group's target features with the best model of the
  group's latest run.
* :func:`pca_figure` draws "Fig. 4" for a group.

A mape is ``+Infinity`` in the database when a test pair has a zero target value (the ratio is
undefined); ``n_zero_targets`` beside it says how many zeros there were.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sklearn.exceptions import DataConversionWarning

from stemstore.analysis import regression as rg
from stemstore.curation import excluded_segments
from stemstore.errors import StemstoreError
from stemstore.store.bulk import feature_matrix, stored_values
from stemstore.analysis.matrix import replace_non_finite
from stemstore.store.schema import RegressionEnsemble, RegressionMetric, RegressionModel, Run, utcnow
from stemstore.store.connection import Store

RUN_KIND = "regression"
#: The model name under which an average of several models is stored.
ENSEMBLE_MODEL = "ensemble"


# -- which features --------------------------------------------------------------------------
def selection_fpred(store: Store, group: str, selection_run: int | None = None) -> tuple[int, list[str]]:
    """(run id, f_pred in order) of a selection run: ``selection_run``, or the group's latest
    finished one."""
    if selection_run is None:
        # only a current run: f_pred of a run whose segments changed would be out of date
        selection_run = store.latest_run("selection", group, current_only=True)
        if selection_run is None:
            raise StemstoreError(
                f"group {group!r} has no finished selection run to take f_pred from: run "
                "'stemstore select' first, or give the features with --features a,b,..."
            )
    else:
        run = store.read_sql("SELECT kind, status, group_name FROM runs WHERE id = :r", {"r": selection_run})
        if run.empty:
            raise StemstoreError(f"unknown run {selection_run}")
        kind, status, run_group = run.iloc[0]
        if kind != "selection":
            raise StemstoreError(f"run {selection_run} is a {kind} run, not a selection run")
        if status != "done":
            raise StemstoreError(f"selection run {selection_run} is {status}, not done")
        if run_group != group:
            raise StemstoreError(f"selection run {selection_run} is of group {run_group!r}, not {group!r}")
    names = store.read_sql(
        "SELECT f.name FROM selection_features sf JOIN features f ON f.id = sf.feature_id "
        "WHERE sf.run_id = :r AND sf.in_fpred ORDER BY sf.pred_order, f.position",
        {"r": selection_run},
    )["name"].tolist()
    if not names:
        raise StemstoreError(f"selection run {selection_run} has an empty f_pred")
    return selection_run, names


def latest_regression_run(store: Store, group: str) -> int:
    """The id of the group's latest finished regression run."""
    store.group_instruments(group)  # unknown group: a clear error
    # stale runs count here, as in table6/table7's is_latest (selection_fpred leaves them out)
    found = store.latest_run(RUN_KIND, group, current_only=False)
    if found is None:
        raise StemstoreError(
            f"group {group!r} has no finished regression run: run 'stemstore regress --group {group}'"
        )
    return found


def run_features(store: Store, run_id: int) -> list[str]:
    """The target features of a regression run, in f_pred order (from its parameters)."""
    with store.session() as s:
        run = s.get(Run, run_id)
        if run is None or run.kind != RUN_KIND:
            raise StemstoreError(f"run {run_id} is not a regression run")
        return list(run.params["features"])


# -- the run ---------------------------------------------------------------------------------
def paired_matrix(store: Store, group: str, features: Sequence[str]) -> pd.DataFrame:
    """The group's paired segments (raw and stem rows) with the features, indexed by segment_id,
    non-finite values replaced as docs/method.md, section 3 describes (count in ``attrs``).
    Pairs a curator excluded are left out (``attrs["exclusions"]``: the exclusion ids applied).

    Raises StemstoreError when there are none, or when a segment lacks one of the features.
    """
    features = list(features)
    frame = feature_matrix(store, group=group, features=list(features))
    frame = frame[frame["pair"].notna()].copy()
    left_out, exclusions = excluded_segments(store, frame.index)
    frame = frame[~frame.index.isin(list(left_out))].copy()
    if frame.empty:
        raise StemstoreError(f"group {group!r} has no paired segments with extracted features")
    with store.engine.connect() as conn:
        _, present = stored_values(store, conn, frame.index.to_numpy(), store.feature_ids(features))
    missing = pd.DataFrame(~present, index=frame.index, columns=features)
    if missing.to_numpy().any():
        counts = missing.sum()
        worst = [f"{name} ({int(n)} segments)" for name, n in counts[counts > 0].items()]
        example = frame[missing.any(axis=1)].iloc[0]
        raise StemstoreError(
            f"{int(missing.any(axis=1).sum())} of the group's {len(frame)} paired segments lack "
            f"values of: {', '.join(worst[:5])}; e.g. {example['multitrack']} pair {example['pair']} "
            f"({example['role']}). Extract them, or leave those features out with --features"
        )
    values, replaced = replace_non_finite(frame[features].to_numpy(dtype=np.float64))
    frame[features] = values
    frame.attrs["non_finite_replaced"] = replaced
    frame.attrs["exclusions"] = exclusions
    frame.attrs["excluded_segments"] = len(left_out)
    return frame


def regress(
    store: Store,
    group: str,
    features: Sequence[str] | None = None,
    selection_run: int | None = None,
    preset: str = "tuned",
    outliers: str = "3sigma",
    test_fraction: float = 0.1,
    seed: int = 0,
    n_jobs: int | None = None,
    grids: Mapping[str, Mapping[str, list]] | None = None,
    ensemble_threshold: float = 0.5,
) -> int:
    """Fit the five models on ``group``'s pairs and record a regression run (docs/method.md, section 5).

    Pairs keep their stored split; without one, a seeded split holds out whole multitracks.

    Parameters
    ----------
    store : Store
        The store with the group's extracted pairs.
    group : str
        The instrument group.
    features : sequence of str, optional
        The inputs and targets; by default the f_pred of ``selection_run``.
    selection_run : int, optional
        The selection run whose f_pred to use; by default the group's latest finished (and
        not stale) selection run. When ``features`` are given too, the run is still checked.
    preset : {"tuned", "paper"}, default="tuned"
        "tuned" grid-searches each model; "paper" uses the study's hyperparameters.
    outliers : {"3sigma", "none"}, default="3sigma"
        The rule for training pairs with extreme values.
    test_fraction : float, default=0.1
        Share of the pairs held out when they have no stored split.
    seed : int, default=0
        Seed of the split, the folds and the models.
    n_jobs : int, optional
        Parallel jobs of the models and grid searches.
    grids : mapping, optional
        Overrides of the tuned preset's grids (:data:`stemstore.analysis.regression.TUNED_GRIDS`).
    ensemble_threshold : float, default=0.5
        The largest best-model mape for which a target feature is kept in choosing the best
        model or average.

    Returns
    -------
    int
        The regression run's id.

    Raises
    ------
    StemstoreError
        For an unknown group, run, preset, outlier rule or feature, a test fraction outside
        (0, 1), the paper preset for a group it has no hyperparameters for, no selection run
        to take f_pred from, too few pairs, or a constant target; a failure during fitting is
        recorded as a failed run with its message.
    """
    store.group_instruments(group)  # an unknown group is an error before anything else
    if preset not in rg.PRESETS:
        raise StemstoreError(f"unknown preset {preset!r}; use one of {', '.join(rg.PRESETS)}")
    if outliers not in rg.OUTLIER_RULES:
        raise StemstoreError(f"unknown outlier rule {outliers!r}; use one of {', '.join(rg.OUTLIER_RULES)}")
    if not 0.0 < test_fraction < 1.0:
        raise StemstoreError(f"the test fraction must be between 0 and 1, got {test_fraction}")
    if preset == "paper" and group not in rg.PAPER_HYPERPARAMETERS:
        raise StemstoreError(
            f"the paper preset has hyperparameters only for groups "
            f"{', '.join(rg.PAPER_HYPERPARAMETERS)}; use --preset tuned for {group!r}"
        )
    if features:
        features = list(dict.fromkeys(features))
        store.feature_ids(features)  # unknown names: a clear error
        if selection_run is not None:
            selection_fpred(store, group, selection_run)  # still check the run the user named
    else:
        selection_run, features = selection_fpred(store, group, selection_run)

    frame = paired_matrix(store, group, features)
    params = {
        "group": group,
        "preset": preset,
        "outliers": outliers,
        "test_fraction": test_fraction,
        "seed": seed,
        "ensemble_threshold": ensemble_threshold,
        "features": features,
        "selection_run": selection_run,
        "grids": rg.json_safe(dict(grids)) if grids else None,
        "exclusions": frame.attrs["exclusions"],
    }
    # also on Ctrl-C the run says it failed, and nothing partial is kept
    with store.run(RUN_KIND, group=group, params=params, seed=seed, failure_message=_failure_message) as run:
        try:
            result = rg.run_regression(
                frame.reset_index(drop=True),
                features,
                group,
                preset=preset,
                outliers=outliers,
                test_fraction=test_fraction,
                seed=seed,
                n_jobs=n_jobs,
                grids=grids,
                ensemble_threshold=ensemble_threshold,
            )
        except ValueError as exc:
            raise StemstoreError(f"group {group}: {exc}") from exc
        _write_results(store, run.id, frame, result, params)
        run.recorded = True  # finished 'done' in the transaction that wrote the results
    return run.id


def _failure_message(exc: BaseException) -> str:
    """A failed regression run records the first line of its error, or the error's type."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _write_results(
    store: Store, run_id: int, frame: pd.DataFrame, result: rg.RegressionResult, params: dict
) -> None:
    """Everything the run produced, and its status 'done', in one transaction."""
    feature_id = dict(zip(result.features, store.feature_ids(result.features).tolist()))

    # The snapshot: every paired segment used, with its side of the split.
    split_of = {
        **{p: "train" for p in result.train_pairs},
        **{p: "test" for p in result.test_pairs},
        **{p: "train" for p in result.removed_outlier_pairs},
    }
    outliers = set(result.removed_outlier_pairs)
    pairs = frame["pair"].astype(str)
    snapshot = pd.DataFrame(
        {
            "run_id": run_id,
            "segment_id": frame.index.to_numpy(dtype=np.int64),
            "split": pairs.map(split_of).to_numpy(dtype=object),
            "excluded": np.where(pairs.isin(outliers), "outlier", None).astype(object),
        }
    )

    predictions = pd.concat(
        [
            pd.DataFrame(
                {
                    "run_id": run_id,
                    "model": name,
                    "pair": m.predictions["pair"].astype(str),
                    "feature_id": m.predictions["feature"].map(feature_id).astype(np.int64),
                    "y_true": m.predictions["stem"],
                    "y_pred": m.predictions["predicted"],
                }
            )
            for name, m in result.models.items()
        ],
        ignore_index=True,
    )

    position = {name: i for i, name in enumerate(result.features, start=1)}  # f_pred order
    metrics = [
        {
            "run_id": run_id,
            "model": row.model,
            "feature_id": feature_id[row.feature],
            "position": position[row.feature],
            "mape": float(row.mape),
            "mae": float(row.mae),
            "n_zero_targets": int(row.n_zero_targets),
        }
        for row in result.metrics_table().itertuples(index=False)
    ]

    ensemble = result.ensemble
    # Only the chosen model is serialised now (predict loads nothing else); the others are
    # refitted by run_model when someone asks for them. An average is stored whole, as
    # ENSEMBLE_MODEL, so its members need no artefact of their own either.
    stored_now = set(ensemble.models) if len(ensemble.models) == 1 else set()
    models = [
        {
            "run_id": run_id,
            "model": name,
            "hyperparams": m.hyperparameters,
            "cv_scores": m.cv,
            "artifact": rg.model_to_bytes(m.estimator) if name in stored_now else None,
        }
        for name, m in result.models.items()
    ]
    if ensemble.is_average:
        models.append(
            {
                "run_id": run_id,
                "model": ENSEMBLE_MODEL,
                "hyperparams": {"models": list(ensemble.models)},
                "cv_scores": None,
                "artifact": rg.model_to_bytes(result.best_estimator),
            }
        )
    candidates = [
        {
            "run_id": run_id,
            "candidate": "+".join(row.models),
            "models": list(row.models),
            "kept_features": list(ensemble.kept_features),
            "a_mape": float(row.a_mape),
            "is_best": i == 0,
        }
        for i, row in enumerate(ensemble.candidates.itertuples(index=False))
    ]

    counts = {
        "pairs": len(result.train_pairs) + len(result.test_pairs) + len(result.removed_outlier_pairs),
        "train_pairs": len(result.train_pairs),
        "test_pairs": len(result.test_pairs),
        "outlier_pairs": len(result.removed_outlier_pairs),
        "non_finite_replaced": int(frame.attrs.get("non_finite_replaced", 0)),
        "excluded_segments": int(frame.attrs.get("excluded_segments", 0)),
        "best": "+".join(ensemble.models) or None,
        "a_mape": ensemble.a_mape if ensemble.models else None,
        "warnings": list(result.warnings),
    }

    with store.session() as s:
        conn = s.connection()
        store.bulk_insert(conn, "run_segments", snapshot)
        store.bulk_insert(conn, "regression_predictions", predictions)
        s.execute(sa.insert(RegressionMetric), metrics)
        s.execute(sa.insert(RegressionModel), models)
        if candidates:
            s.execute(sa.insert(RegressionEnsemble), candidates)
        run = s.get(Run, run_id)
        run.params = {**params, **result.parameters()}
        run.counts = counts
        run.status, run.finished_at = "done", utcnow()


# -- reading a run back ----------------------------------------------------------------------
@dataclass
class RegressionSummary:
    """What a finished regression run did: its pairs, the best model and its a-mape, notes."""

    run_id: int
    group: str | None
    preset: str
    threshold: float
    counts: dict

    @property
    def best(self) -> str | None:
        return self.counts.get("best")

    @property
    def warnings(self) -> list[str]:
        return list(self.counts.get("warnings") or [])

    def describe(self) -> str:
        counts = self.counts
        text = (
            f"regression run {self.run_id} ({self.group}, {self.preset}): {counts['train_pairs']} training "
            f"and {counts['test_pairs']} test pairs, {counts['outlier_pairs']} outlier pairs removed; "
        )
        if self.best:
            return text + f"best {self.best} with a-mape {counts['a_mape']:.4g}"
        return text + f"no target feature has a best mape within {self.threshold}: no model chosen"


def regression_summary(store: Store, run_id: int) -> RegressionSummary:
    """The summary of regression run ``run_id``, from its run record."""
    with store.session() as s:
        run = s.get(Run, run_id)
        if run is None or run.kind != RUN_KIND:
            raise StemstoreError(f"run {run_id} is not a regression run")
        params = run.params or {}
        return RegressionSummary(
            run_id=run_id,
            group=run.group_name,
            preset=params.get("preset"),
            threshold=params.get("ensemble_threshold"),
            counts=dict(run.counts or {}),
        )


@dataclass
class StoredModel:
    """The best model of a regression run, loaded from its skops bytes."""

    run_id: int
    name: str  #: a model name, or "ensemble" for an average
    models: list[str]  #: the models it averages (one for a single model)
    features: list[str]  #: inputs and targets, in f_pred order
    estimator: object
    a_mape: float | None


def best_model(store: Store, run_id: int) -> StoredModel:
    """Load the best model (or average of models) of regression run ``run_id``."""
    features = run_features(store, run_id)
    best = store.read_sql(
        "SELECT candidate, models, a_mape FROM regression_ensembles WHERE run_id = :r AND is_best",
        {"r": run_id},
    )
    if best.empty:
        raise StemstoreError(
            f"regression run {run_id} chose no model: no target feature was predicted within the "
            "ensemble threshold (see 'stemstore report table6')"
        )
    models = _json_list(best["models"].iloc[0])
    name = models[0] if len(models) == 1 else ENSEMBLE_MODEL
    estimator = run_model(store, run_id, name)
    return StoredModel(run_id, name, models, features, estimator, float(best["a_mape"].iloc[0]))


def run_model(store: Store, run_id: int, model: str, n_jobs: int | None = None):
    """A fitted model of regression run ``run_id``: its stored artefact, else a refit.

    A run stores only its best model (or average of models) as skops bytes. Any other of the
    five models is refitted here, as the run fitted it: the same training pairs (the run's
    snapshot, outliers left out, in pair order), the same feature values, the recorded
    hyperparameters and seed. Before it is returned, the refit predicts the run's test pairs
    and must give exactly the stored predictions; if the stored values changed since the run
    (the run is stale), it cannot and the call fails rather than return a different model.

    Parameters
    ----------
    store : Store
        The store holding the run.
    run_id : int
        A finished regression run.
    model : str
        One of :data:`stemstore.analysis.regression.MODEL_NAMES`, or ``"ensemble"`` for a stored average.
    n_jobs : int, optional
        Threads of a random forest's refit (the result does not depend on it).

    Returns
    -------
    estimator
        The fitted model: what the run fitted, bit for bit.

    Raises
    ------
    StemstoreError
        For an unknown run or model, an unloadable artefact, or a refit that does not
        reproduce the run's test predictions.
    """
    rows = store.read_sql(
        "SELECT artifact, hyperparams FROM regression_models WHERE run_id = :r AND model = :m",
        {"r": run_id, "m": model},
    )
    if rows.empty:
        raise StemstoreError(f"regression run {run_id} has no model {model!r}")
    artifact = rows["artifact"].iloc[0]
    if artifact is not None:
        try:
            return rg.model_from_bytes(artifact)
        except ValueError as exc:
            raise StemstoreError(f"regression run {run_id}: {exc}") from exc
    if model not in rg.MODEL_NAMES:
        raise StemstoreError(f"regression run {run_id} has no stored model {model!r}")
    return _refit(store, run_id, model, _json_dict(rows["hyperparams"].iloc[0]), n_jobs)


def _refit(store: Store, run_id: int, model: str, hyperparameters: dict, n_jobs: int | None):
    """Refit ``model`` of run ``run_id`` on its training pairs; check it against the run's
    stored test predictions (see :func:`run_model`)."""
    with store.session() as s:
        run = s.get(Run, run_id)
        if run is None or run.kind != RUN_KIND or run.status != "done":
            raise StemstoreError(f"run {run_id} is not a finished regression run")
        params, seed = dict(run.params), run.seed
    features = list(params["features"])
    snapshot = store.read_sql(
        "SELECT segment_id, split, excluded FROM run_segments WHERE run_id = :r", {"r": run_id}
    ).set_index("segment_id")
    frame = feature_matrix(store, segment_ids=snapshot.index.tolist(), features=features)
    # the run replaced non-finite values over exactly these segments, in this (catalog) order
    frame[features], _ = replace_non_finite(frame[features].to_numpy(dtype=np.float64))
    frame["split"] = snapshot["split"].reindex(frame.index)  # the run's split, not the stored one
    outliers = set(frame.loc[snapshot["excluded"].reindex(frame.index).notna(), "pair"].astype(str))
    # As run_regression does: every pair in pair order, then the rows picked by index arrays.
    # The copies this makes are C-ordered like the run's; a matrix laid out otherwise can sum in
    # another order (numpy, BLAS) and differ in the last bit.
    data = rg.pairs_to_xy(frame, features)
    is_outlier = np.isin(data.pairs.astype(str), list(outliers))
    train = np.flatnonzero((data.split == "train") & ~is_outlier)
    test = np.flatnonzero(data.split == "test")

    estimator = rg.unfitted_model(model, params["preset"], hyperparameters, seed, n_jobs=n_jobs)
    with warnings.catch_warnings():
        # as in run_regression: one target feature is a column vector on purpose
        warnings.filterwarnings("ignore", category=DataConversionWarning)
        rg.fit_deterministic(estimator, data.X[train], data.Y[train])

    stored = store.read_sql(
        "SELECT pair, feature_id, y_pred FROM regression_predictions WHERE run_id = :r AND model = :m",
        {"r": run_id, "m": model},
    )
    column_of = {fid: i for i, fid in enumerate(store.feature_ids(features).tolist())}
    row_of = {str(p): i for i, p in enumerate(data.pairs[test])}
    expected = np.full((len(test), len(features)), np.nan)
    expected[
        stored["pair"].astype(str).map(row_of).to_numpy(), stored["feature_id"].map(column_of).to_numpy()
    ] = stored["y_pred"].to_numpy(dtype=np.float64)
    if not np.array_equal(rg.predict_stem(estimator, data.X[test]), expected):
        raise StemstoreError(
            f"regression run {run_id}: model {model!r} refitted from the stored values does not "
            "reproduce the run's test predictions (were feature values changed since the run?); "
            "run 'stemstore regress' again"
        )
    return estimator


def _json_dict(value) -> dict:
    import json

    return json.loads(value) if isinstance(value, str) else dict(value or {})


def _json_list(value) -> list:
    import json

    return json.loads(value) if isinstance(value, str) else list(value)


def segment_seconds(store: Store, run_id: int) -> float:
    """The window the run's segments were cut with: their median duration, or the method's
    10 s (docs/method.md, section 2) when they carry none (imported values)."""
    from stemstore.audio import SEGMENT_SECONDS

    durations = store.read_sql(
        "SELECT s.duration FROM run_segments rs JOIN segments s ON s.id = rs.segment_id "
        "WHERE rs.run_id = :r AND s.duration IS NOT NULL AND s.duration > 0",
        {"r": run_id},
    )
    return float(durations["duration"].median()) if len(durations) else SEGMENT_SECONDS


# -- prediction ------------------------------------------------------------------------------
def predict(store: Store, audio_path: str | Path, group: str) -> pd.DataFrame:
    """Predict the stem values of the group's target features from a raw recording.

    The recording is analysed like a raw track (docs/method.md, section 2): mono, 44.1 kHz, the
    highest-energy window as long as the group's segments (10 s by default), ReplayGain and
    EqualLoudness, then the catalog's features. A recording shorter than the window is analysed
    whole (the frame's ``attrs["notes"]`` says so). The model is the best of the group's latest
    finished regression run.

    Parameters
    ----------
    store : Store
        The store holding the group's regression runs.
    audio_path : str or pathlib.Path
        The raw recording to analyse.
    group : str
        The instrument group whose model to use.

    Returns
    -------
    pandas.DataFrame
        One row per target feature of the run, with columns ``feature``, ``raw`` (the
        recording's own value) and ``predicted_stem`` (the predicted stem value). ``attrs``
        holds ``run_id``, ``model`` (the model names joined by "+"), ``a_mape``,
        ``window_start_s``, ``window_s`` (the window) and ``notes`` (a list of str).

    Raises
    ------
    StemstoreError
        For an unknown group or one without a finished regression run, a run whose features
        are not all catalog features, a recording that cannot be loaded or analysed, a silent
        analysed window, or a target feature without a finite value for this recording.
    """
    from stemstore.audio import (
        SAMPLE_RATE,
        AudioError,
        highest_energy_window,
        is_silent,
        load_mono,
        preprocess,
    )
    from stemstore.corpus.audio_files import wav_truncation
    from stemstore.features.extractor import FeatureExtractor

    # libsndfile quietly reads a cut-short WAV's remaining frames; predicting from part of
    # a recording without saying so would mislead, so refuse as ingest does
    if Path(audio_path).suffix.lower() == ".wav" and Path(audio_path).is_file():
        problem = wav_truncation(Path(audio_path), Path(audio_path).stat().st_size)
        if problem:
            raise StemstoreError(f"{audio_path}: {problem}; nothing to predict from")
    run_id = latest_regression_run(store, group)
    stored = best_model(store, run_id)
    catalog_names = set(store.features["name"])
    not_catalog = [f for f in stored.features if f not in catalog_names]
    if not_catalog:
        raise StemstoreError(
            f"run {run_id}'s features are not all catalog features: {', '.join(not_catalog)}"
        )

    try:
        audio = load_mono(audio_path)
    except AudioError as exc:
        raise StemstoreError(str(exc)) from exc
    seconds = segment_seconds(store, run_id)
    window = int(round(seconds * SAMPLE_RATE))
    notes = []
    if audio.size >= window:
        start = highest_energy_window(audio, window)
        segment = audio[start : start + window]
    else:
        start, segment = 0, audio
        notes.append(
            f"the recording ({audio.size / SAMPLE_RATE:.2f} s) is shorter than the "
            f"{seconds:g} s window: analysed whole, so length-dependent features may be off"
        )
    if is_silent(segment):
        raise StemstoreError(f"{audio_path}: the analysed window is silent; nothing to predict from")
    try:
        ready, _gain = preprocess(segment)
        extractor = FeatureExtractor()
        values = extractor.extract(ready)
    except ValueError as exc:
        raise StemstoreError(f"{audio_path}: cannot analyse it: {exc}") from exc

    by_name = dict(zip(extractor.names, values.tolist()))
    raw = np.array([by_name[f] for f in stored.features], dtype=float)
    bad = [f for f, v in zip(stored.features, raw) if not np.isfinite(v)]
    if bad:
        raise StemstoreError(
            f"{audio_path}: Essentia gives no finite value of {', '.join(bad)} "
            "for this recording; cannot predict"
        )
    predicted = rg.predict_stem(stored.estimator, raw)
    out = pd.DataFrame({"feature": stored.features, "raw": raw, "predicted_stem": predicted})
    out.attrs.update(
        {
            "run_id": run_id,
            "model": "+".join(stored.models),
            "a_mape": stored.a_mape,
            "window_start_s": start / SAMPLE_RATE,
            "window_s": min(seconds, audio.size / SAMPLE_RATE),
            "notes": notes,
        }
    )
    return out


# -- the figure ------------------------------------------------------------------------------
def pca_features(store: Store, group: str) -> tuple[str, list[str]]:
    """(where from, features) for the group's PCA: its latest regression run, else its latest
    selection run's f_pred."""
    store.group_instruments(group)
    try:
        run_id = latest_regression_run(store, group)
        return f"regression run {run_id}", run_features(store, run_id)
    except StemstoreError:
        pass
    try:
        run_id, names = selection_fpred(store, group)
    except StemstoreError:
        raise StemstoreError(
            f"group {group!r} has no regression or selection run to take the "
            "features from: run 'stemstore regress' or 'stemstore select' first"
        ) from None
    return f"selection run {run_id}", names


def pca_figure(store: Store, group: str, path: str | Path) -> dict:
    """Write "Fig. 4" for ``group`` to ``path``: all its segments' raw and stem f_pred vectors
    in two PCA dimensions. Segments lacking a value of a feature are left out (counted)."""
    from stemstore.analysis.plots import plot_pca

    source, features = pca_features(store, group)
    frame = feature_matrix(store, group=group, features=list(features))
    complete = frame[features].notna().all(axis=1) & np.isfinite(frame[features]).all(axis=1)
    left_out = int((~complete).sum())
    frame = frame[complete]
    raw, stem = frame[frame["role"] == "raw"], frame[frame["role"] == "stem"]
    what = f"PCA of {len(features)} features" if len(features) > 1 else "the one f_pred feature"
    try:
        plot_pca(raw, stem, features, path=path, title=f"{group}: {what} ({source}), raw vs stem")
    except ValueError as exc:
        raise StemstoreError(f"group {group}: {exc}") from exc
    return {"source": source, "features": features, "raw": len(raw), "stem": len(stem), "left_out": left_out}
