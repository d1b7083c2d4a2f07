"""The feature-selection stage in the store: run RandomForestSelector on a group's raw and stem
segments (raw = 0, stem = 1) and keep everything it found (docs/method.md, section 4).

A run stores its parameters, seed, software versions, the snapshot of segments it used,
every feature's importance (mean, sd, rank, membership of f_p1/f_p2/f_pred) and the curves:
the importance sd by rank with the CART staircase, the nested (interpretation) OOB errors and
the ascending (prediction) OOB errors.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from stemstore.curation import excluded_segments
from stemstore.errors import StemstoreError
from stemstore.store.bulk import META_COLUMNS, segment_table
from stemstore.analysis.matrix import analysis_matrix
from stemstore.store.schema import Run
from stemstore.analysis.selection import PRESETS, RandomForestSelector
from stemstore.store.connection import Store

#: Fewer segments than this in either class cannot be analysed.
MIN_PER_CLASS = 10


@dataclass
class SelectionInput:
    """A group's classification problem: X (segments × features), y (0 raw, 1 stem)."""

    segment_ids: np.ndarray
    X: pd.DataFrame
    y: np.ndarray
    non_finite_replaced: int
    exclusions: list[int] = field(default_factory=list)  # ids of the exclusions applied
    excluded_segments: int = 0  # segments they left out


def selection_input(store: Store, group: str, segment_ids: list[int] | None = None) -> SelectionInput:
    """Read a group's extracted segments, less those a curator excluded; keep the features
    every segment has; replace non-finite values as docs/method.md, section 3 describes."""
    candidates = segment_table(store, group=group)["segment_id"] if segment_ids is None else segment_ids
    left_out, exclusions = excluded_segments(store, candidates)
    if left_out:
        segment_ids = [int(i) for i in candidates if int(i) not in left_out]
    wide, replaced = analysis_matrix(store, group=group, segment_ids=segment_ids)
    features = [c for c in wide.columns if c not in META_COLUMNS]
    if wide.empty or not features:
        raise StemstoreError(
            f"group {group!r} has no extracted features: run 'stemstore extract' (or import features) first"
        )
    n_raw, n_stem = int((wide["role"] == "raw").sum()), int((wide["role"] == "stem").sum())
    if min(n_raw, n_stem) < MIN_PER_CLASS:
        raise StemstoreError(
            f"group {group!r} has {n_raw} raw and {n_stem} stem segments; selection "
            f"needs at least {MIN_PER_CLASS} of each"
        )
    return SelectionInput(
        segment_ids=wide.index.to_numpy(),
        X=pd.DataFrame(wide[features].to_numpy(dtype=np.float64), columns=features),
        y=(wide["role"] == "stem").to_numpy(dtype=np.int64),
        non_finite_replaced=replaced,
        exclusions=exclusions,
        excluded_segments=len(left_out),
    )


def select(
    store: Store,
    group: str,
    *,
    preset: str = "fast",
    seed: int = 0,
    n_jobs: int | None = None,
    dask_address: str | None = None,
    progress=None,
    **overrides,
) -> int:
    """Run the three-step feature selection for ``group`` and store it (docs/method.md, section 4).

    A failure leaves a failed run with its message and no partial results.

    Parameters
    ----------
    store : Store
        The store with the group's extracted segments.
    group : str
        The instrument group.
    preset : {"fast", "paper"}, default="fast"
        The parameter set (:data:`stemstore.analysis.selection.PRESETS`).
    seed : int, default=0
        The seed; the same seed gives the same result whatever ``n_jobs`` is.
    n_jobs : int, optional
        Parallel jobs over forests.
    dask_address : str, optional
        Grow the forests on the Dask cluster at this address (e.g. ``tcp://scheduler:8786``)
        through joblib's dask backend instead of local threads or processes; ``n_jobs`` is then
        all the cluster's threads. Every forest has its own seed, so the result is the same as
        a local run's for the same seed. The address is recorded in the run's parameters.
    progress : callable, optional
        Called with a line of text as each step starts.
    **overrides
        :class:`~stemstore.analysis.selection.RandomForestSelector` parameters on top of the
        preset, e.g. ``n_trees=500``.

    Returns
    -------
    int
        The selection run's id.

    Raises
    ------
    StemstoreError
        For an unknown preset, a group without extracted features or with too few raw or stem
        segments, an unreachable Dask scheduler, or a selection that fails on the data (the
        failed run is recorded with its message).
    """
    if preset not in PRESETS:
        raise StemstoreError(f"unknown preset {preset!r} (presets: {', '.join(sorted(PRESETS))})")
    data = selection_input(store, group)
    if dask_address:
        n_jobs = -1  # all the cluster's threads
    selector = RandomForestSelector.from_preset(preset, random_state=seed, n_jobs=n_jobs, **overrides)
    params = {
        "preset": preset,
        **{k: v for k, v in selector.get_params().items() if k != "verbose"},
        "parallel": "dask" if dask_address else "local",
        "dask_address": dask_address,
        "n_segments": len(data.y),
        "n_features": data.X.shape[1],
        "exclusions": data.exclusions,
    }
    with contextlib.ExitStack() as cluster:
        if dask_address:
            cluster.enter_context(_dask_backend(dask_address))
        return _run_selection(store, group, preset, seed, data, selector, params, progress)


def _dask_backend(address: str) -> contextlib.AbstractContextManager:
    """Route joblib (the selector's forests) to the Dask cluster at ``address`` while active."""
    import joblib

    from stemstore.cluster import connect

    client = connect(address)
    stack = contextlib.ExitStack()
    stack.callback(client.close)
    stack.enter_context(joblib.parallel_config(backend="dask"))
    return stack


def _run_selection(store, group, preset, seed, data, selector, params, progress) -> int:
    """Fit ``selector`` on ``data`` inside a selection run and store what it found."""
    try:
        with store.run(
            "selection", group=group, params=params, seed=seed, failure_message=_failure_message
        ) as run:
            if progress:
                progress(
                    f"selecting among {data.X.shape[1]} features of {len(data.y)} segments "
                    f"({preset} preset: {selector.n_forests} forests × {selector.n_trees} trees)"
                )
            selector.fit(data.X, data.y)
            _store_results(store, run.id, data, selector)
            run.counts = {
                "f_p1": len(selector.f_p1_),
                "f_p2": len(selector.f_p2_),
                "f_pred": len(selector.f_pred_),
                "threshold": float(selector.threshold_),
                "th_pred": float(selector.th_pred_),
                "raw_segments": int((data.y == 0).sum()),
                "stem_segments": int((data.y == 1).sum()),
                "non_finite_replaced": data.non_finite_replaced,
                "excluded_segments": data.excluded_segments,
            }
    except ValueError as exc:
        raise StemstoreError(f"selection for group {group!r} failed: {exc}") from exc
    return run.id


def _failure_message(exc: BaseException) -> str:
    """A failed selection run records the first line of its error (``interrupted`` for Ctrl-C)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return str(exc).splitlines()[0] if str(exc) else repr(exc)


def _store_results(store: Store, run_id: int, data: SelectionInput, selector: RandomForestSelector) -> None:
    ids = store.feature_ids(data.X.columns)
    n = len(ids)
    rank = np.empty(n, dtype=np.int64)
    rank[selector.ranking_] = np.arange(1, n + 1)
    membership = {name: np.zeros(n, dtype=bool) for name in ("in_fp1", "in_fp2", "in_fpred")}
    membership["in_fp1"][selector.f_p1_] = True
    membership["in_fp2"][selector.f_p2_] = True
    membership["in_fpred"][selector.f_pred_] = True
    pred_order = pd.array(np.full(n, pd.NA), dtype="Int64")  # NULL outside f_pred
    pred_order[selector.f_pred_] = np.arange(1, len(selector.f_pred_) + 1)
    features = pd.DataFrame(
        {
            "run_id": run_id,
            "feature_id": ids,
            "importance_mean": selector.importances_mean_.astype(np.float64),
            "importance_sd": selector.importances_std_.astype(np.float64),
            "rank": rank,
            **membership,
            "pred_order": pred_order,
        }
    )

    by_rank = selector.ranking_
    interp, pred = selector.oob_errors_interp_, selector.oob_errors_pred_
    curves = pd.concat(
        [
            pd.DataFrame(
                {
                    "curve": "importance_sd",
                    "step": np.arange(1, n + 1),
                    "feature_id": ids[by_rank],
                    "n_features": np.arange(1, n + 1),
                    "value_mean": selector.std_by_rank_,
                    "value_sd": None,
                    "kept": None,
                }
            ),
            pd.DataFrame(
                {
                    "curve": "cart",
                    "step": np.arange(1, n + 1),
                    "feature_id": ids[by_rank],
                    "n_features": np.arange(1, n + 1),
                    "value_mean": selector.cart_predictions_,
                    "value_sd": None,
                    "kept": None,
                }
            ),
            pd.DataFrame(
                {
                    "curve": "interpretation",
                    "step": interp["n_features"],
                    "feature_id": ids[interp["feature"]],
                    "n_features": interp["n_features"],
                    "value_mean": interp["mean"],
                    "value_sd": interp["std"],
                    "kept": interp["n_features"] <= len(selector.f_p2_),
                }
            ),
            pd.DataFrame(
                {
                    "curve": "prediction",
                    "step": np.arange(1, len(pred["feature"]) + 1),
                    "feature_id": ids[pred["feature"]],
                    "n_features": pred["n_features"],
                    "value_mean": pred["mean"],
                    "value_sd": pred["std"],
                    "kept": pred["kept"],
                }
            ),
        ],
        ignore_index=True,
    )
    curves.insert(0, "run_id", run_id)
    with store.engine.begin() as conn:
        store.bulk_insert(
            conn,
            "run_segments",
            pd.DataFrame({"run_id": run_id, "segment_id": data.segment_ids.astype(np.int64)}),
        )
        store.bulk_insert(conn, "selection_features", features)
        store.bulk_insert(conn, "selection_curves", curves)


def latest_selection_run(store: Store, group: str, run_id: int | None = None) -> int:
    """The id of ``run_id`` (checked) or of the group's latest finished selection run."""
    with store.session() as s:
        if run_id is not None:
            run = s.get(Run, run_id)
            if run is None or run.kind != "selection":
                raise StemstoreError(f"no selection run {run_id}")
            if run.status != "done":
                raise StemstoreError(f"selection run {run_id} is {run.status}, not done")
            return run_id
    # stale runs count here (the figures show the group's latest finished run, as table4 marks
    # it), while regress takes its f_pred from the latest current one (selection_fpred)
    found = store.latest_run("selection", group, current_only=False)
    if found is None:
        raise StemstoreError(
            f"group {group!r} has no finished selection run: run 'stemstore select --group {group}'"
        )
    return found


@dataclass
class SelectionSummary:
    """What a finished selection run found: its counts (f_p1, f_p2, f_pred, thresholds, ...)."""

    run_id: int
    group: str | None
    counts: dict

    def describe(self) -> str:
        counts = json.dumps(self.counts, sort_keys=True, default=str)  # as the run record keeps them
        return f"selection run {self.run_id} for {self.group}: {counts}"


def selection_summary(store: Store, run_id: int) -> SelectionSummary:
    """The summary of selection run ``run_id``, from its run record."""
    with store.session() as s:
        run = s.get(Run, run_id)
        if run is None or run.kind != "selection":
            raise StemstoreError(f"no selection run {run_id}")
        return SelectionSummary(run_id=run_id, group=run.group_name, counts=dict(run.counts or {}))


def selection_results(store: Store, run_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's per-feature table (with names, by rank) and its curves (with feature names)."""
    features = store.read_sql(
        "SELECT f.name, sf.importance_mean, sf.importance_sd, sf.rank, sf.in_fp1, sf.in_fp2, "
        "sf.in_fpred, sf.pred_order FROM selection_features sf JOIN features f ON f.id = sf.feature_id "
        "WHERE sf.run_id = :r ORDER BY sf.rank",
        {"r": run_id},
    )
    curves = store.read_sql(
        "SELECT c.curve, c.step, c.n_features, f.name AS feature, c.value_mean, c.value_sd, c.kept "
        "FROM selection_curves c LEFT JOIN features f ON f.id = c.feature_id "
        "WHERE c.run_id = :r ORDER BY c.curve, c.step",
        {"r": run_id},
    )
    return features, curves


def importance_figure(store: Store, group: str, path, run_id: int | None = None, top: int = 50) -> int:
    """Fig. 2 of a selection run (default: the group's latest) as a PNG. Returns the run id."""
    from stemstore.analysis.plots import plot_importance

    run_id = latest_selection_run(store, group, run_id)
    features, _ = selection_results(store, run_id)
    plot_importance(
        features["importance_mean"].to_numpy(),
        features["importance_sd"].to_numpy(),
        features["name"].to_numpy(),
        top=top,
        path=path,
        title=f"{group}: feature importance (selection run {run_id})",
    )
    return run_id


def oob_figure(store: Store, group: str, path, run_id: int | None = None) -> int:
    """Fig. 3 of a selection run (default: the group's latest) as a PNG. Returns the run id."""
    from stemstore.analysis.plots import plot_oob_curves

    run_id = latest_selection_run(store, group, run_id)
    _, curves = selection_results(store, run_id)
    curves = curves.rename(columns={"value_mean": "mean", "value_sd": "std"})
    nested, ascending = curves[curves["curve"] == "interpretation"], curves[curves["curve"] == "prediction"]
    plot_oob_curves(
        nested,
        ascending,
        n_selected_interp=int(nested["kept"].astype(bool).sum()),
        pred_labels=list(ascending["feature"]),
        path=path,
        title=f"{group}: OOB error (selection run {run_id})",
    )
    return run_id
