"""Figures of the study (docs/method.md, section 6: Figs. 2, 3 and 4), drawn with matplotlib.

Each function takes plain arrays / DataFrames (what the store reads back from the
database or what :class:`stemstore.analysis.selection.RandomForestSelector` exposes),
returns the :class:`matplotlib.figure.Figure`, and writes it to ``path`` when one
is given (format from the extension, e.g. ``.png`` or ``.pdf``).

Figures are drawn with matplotlib's object API (a :class:`~matplotlib.figure.Figure`
on an Agg canvas), not with pyplot: importing this module or drawing with it never
changes matplotlib's backend, so a notebook or GUI session keeps its own, and no
display is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stemstore.errors import check_output_path, write_error

__all__ = ["plot_importance", "plot_oob_curves", "plot_pca"]


def _new_or_given_axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    # A bare Figure (not pyplot.figure) is not kept alive by pyplot's registry,
    # so a store drawing hundreds of figures does not accumulate them. Its own Agg
    # canvas renders and saves it whatever backend the session uses.
    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


#: The files a figure is written as (matplotlib's Agg canvas writes these).
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")


def check_figure_path(path) -> Path:
    """``path`` if a figure may be written there (see :func:`~stemstore.errors.check_output_path`)."""
    return check_output_path(path, FIGURE_SUFFIXES)


def _save(figure: Figure, path) -> None:
    if path is not None:
        path = check_figure_path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(path, dpi=150)
        except OSError as exc:
            raise write_error(path, exc) from exc


def plot_importance(
    importances_mean, importances_std, names=None, top: int = 50, ax=None, path=None, title: str | None = None
) -> Figure:
    """Fig. 2: mean permutation importance of the ``top`` most important features.

    Parameters
    ----------
    importances_mean, importances_std : array-like of shape (n_features,)
        Mean and standard deviation over the thresholding forests (e.g.
        ``selector.importances_mean_`` and ``selector.importances_std_``).
    names : sequence of str, optional
        Feature names, same order; defaults to column numbers.
    top : int
        How many of the most important features to show, most important first.
    ax : matplotlib Axes, optional
        Draw into it instead of a new figure.
    path : str or Path, optional
        Where to save the figure.
    """
    mean = np.asarray(importances_mean, dtype=float)
    std = np.asarray(importances_std, dtype=float)
    names = np.asarray([str(i) for i in range(mean.size)] if names is None else list(names), dtype=object)
    if not (mean.shape == std.shape == names.shape):
        raise ValueError("importances_mean, importances_std and names must have the same length")
    order = np.argsort(-mean, kind="stable")[:top]

    # Horizontal bars keep long Essentia names (lowLevel.barkbands.max.2) readable.
    figure, ax = _new_or_given_axes(ax, figsize=(8, 0.22 * len(order) + 1.5))
    positions = np.arange(len(order))
    ax.barh(positions, mean[order], xerr=std[order], color="tab:blue", ecolor="0.3", capsize=2, height=0.7)
    ax.set_yticks(positions, names[order], fontsize=7)
    ax.invert_yaxis()  # most important on top
    ax.axvline(0.0, color="0.5", linewidth=0.8)
    ax.set_xlabel("mean permutation importance (increase of OOB error), with sd over forests")
    ax.set_ylabel("feature")
    ax.set_title(title or f"Importance of the {len(order)} most important features")
    _save(figure, path)
    return figure


def _mean_and_std(errors):
    """Mean (and sd if given) from an array, a dict/DataFrame with 'mean' and 'std'."""
    if isinstance(errors, Mapping) or hasattr(errors, "columns"):
        mean = np.asarray(errors["mean"], dtype=float)
        has_std = ("std" in errors) if isinstance(errors, Mapping) else ("std" in errors.columns)
        return mean, (np.asarray(errors["std"], dtype=float) if has_std else None)
    return np.asarray(errors, dtype=float), None


def plot_oob_curves(
    interp_errors,
    pred_errors,
    n_selected_interp: int | None = None,
    pred_labels: Sequence[str] | None = None,
    ax=None,
    path=None,
    title: str | None = None,
) -> Figure:
    """Fig. 3: OOB error of the nested (interpretation) and ascending (prediction) models.

    Parameters
    ----------
    interp_errors : array-like, or dict/DataFrame with "mean" and optional "std"
        Mean OOB error of the nested model with the top 1, 2, ... features
        (``selector.oob_errors_interp_``); the sd is drawn as a band.
    pred_errors : same forms
        Mean OOB error at each ascending step (``selector.oob_errors_pred_``).
        If it has a boolean "kept" entry, kept steps are drawn filled and
        rejected ones hollow.
    n_selected_interp : int, optional
        |f_p2|, marked with a vertical line.
    pred_labels : sequence of str, optional
        Name of the feature tried at each ascending step, for the x tick labels.
    """
    interp_mean, interp_std = _mean_and_std(interp_errors)
    pred_mean, pred_std = _mean_and_std(pred_errors)
    figure, ax = _new_or_given_axes(ax, figsize=(8, 4.5))

    nested_x = np.arange(1, interp_mean.size + 1)
    ax.plot(nested_x, interp_mean, color="tab:blue", marker=".", label="nested models (interpretation)")
    if interp_std is not None:
        ax.fill_between(
            nested_x,
            interp_mean - interp_std,
            interp_mean + interp_std,
            color="tab:blue",
            alpha=0.2,
            label="nested: ± 1 sd",
        )

    steps = np.arange(1, pred_mean.size + 1)
    ax.plot(steps, pred_mean, color="tab:orange", linestyle="--", label="ascending models (prediction)")
    kept = None
    if isinstance(pred_errors, Mapping) or hasattr(pred_errors, "columns"):
        has_kept = (
            ("kept" in pred_errors) if isinstance(pred_errors, Mapping) else ("kept" in pred_errors.columns)
        )
        kept = np.asarray(pred_errors["kept"], dtype=bool) if has_kept else None
    if kept is None:
        ax.scatter(steps, pred_mean, color="tab:orange", zorder=3)
    else:
        ax.scatter(steps[kept], pred_mean[kept], color="tab:orange", zorder=3, label="feature kept")
        ax.scatter(
            steps[~kept],
            pred_mean[~kept],
            facecolors="none",
            edgecolors="tab:orange",
            zorder=3,
            label="feature rejected",
        )
    if pred_std is not None:
        ax.errorbar(steps, pred_mean, yerr=pred_std, fmt="none", ecolor="tab:orange", alpha=0.5)
    if n_selected_interp is not None:
        ax.axvline(n_selected_interp, color="0.4", linestyle=":", label=f"|f_p2| = {n_selected_interp}")
    if pred_labels is not None and len(pred_labels) == pred_mean.size and pred_mean.size <= 40:
        secondary = ax.secondary_xaxis("top")
        secondary.set_xticks(steps, [str(label) for label in pred_labels], rotation=90, fontsize=6)

    ax.set_xlabel("number of features in the nested model / ascending step")
    ax.set_ylabel("OOB error rate")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title(title or "OOB error of nested and ascending random forests")
    _save(figure, path)
    return figure


RAW_COLOUR = "#1f77b4"
STEM_COLOUR = "#d62728"


def plot_pca(
    raw_values, stem_values, feature_names: Sequence[str], ax=None, path=None, title: str | None = None
) -> Figure:
    """Fig. 4: raw and stem f_pred vectors projected by PCA to two dimensions, two colours.

    ``raw_values`` and ``stem_values`` are (n, n_features) arrays or DataFrames (the columns named
    in ``feature_names`` are taken from a DataFrame); the two sets need not be paired. Features
    are standardised over both sets together before the PCA, because f_pred features differ by
    orders of magnitude and an unscaled PCA would show only the largest. Axis labels give each
    component's share of the variance. With a single feature there is nothing to project: the
    figure shows its standardised values, raw and stem on two rows.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    feature_names = list(feature_names)
    raw = _as_matrix(raw_values, feature_names, "raw_values")
    stem = _as_matrix(stem_values, feature_names, "stem_values")
    if len(raw) + len(stem) < 2:
        raise ValueError("PCA needs at least two segments in total")
    if not feature_names:
        raise ValueError("PCA needs at least one feature")

    both = StandardScaler().fit_transform(np.vstack([raw, stem]))
    figure, ax = _new_or_given_axes(ax, figsize=(6, 5))
    if len(feature_names) == 1:
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(both))  # fixed: same picture every time
        rows = np.r_[np.zeros(len(raw)), np.ones(len(stem))] + jitter
        points = np.column_stack([both[:, 0], rows])
        ax.set_xlabel(f"{feature_names[0]} (standardised)")
        ax.set_yticks([0, 1], ["raw", "stem"])
        default_title = f"f_pred is one feature, {feature_names[0]}: raw vs stem"
    else:
        pca = PCA(n_components=2)
        points = pca.fit_transform(both)
        explained = pca.explained_variance_ratio_ * 100
        ax.set_xlabel(f"PC 1 ({explained[0]:.1f}% of variance)")
        ax.set_ylabel(f"PC 2 ({explained[1]:.1f}% of variance)")
        default_title = f"PCA of {len(feature_names)} f_pred features, raw vs stem"
    raw_2d, stem_2d = points[: len(raw)], points[len(raw) :]
    ax.scatter(raw_2d[:, 0], raw_2d[:, 1], s=18, alpha=0.7, color=RAW_COLOUR, label=f"raw (n={len(raw)})")
    ax.scatter(
        stem_2d[:, 0],
        stem_2d[:, 1],
        s=18,
        alpha=0.7,
        color=STEM_COLOUR,
        marker="^",
        label=f"stem (n={len(stem)})",
    )
    ax.set_title(title or default_title)
    ax.legend()
    ax.grid(True, alpha=0.3)
    _save(figure, path)
    return figure


def _as_matrix(values, feature_names: list[str], what: str) -> np.ndarray:
    """A finite float matrix with one column per feature name."""
    if hasattr(values, "columns"):  # a DataFrame: pick the features by name, in order
        missing = [f for f in feature_names if f not in values.columns]
        if missing:
            raise ValueError(f"{what} lacks feature column(s): {', '.join(missing)}")
        values = values[feature_names]
    matrix = np.asarray(values, dtype=float)
    if matrix.ndim != 2 or matrix.shape[1] != len(feature_names):
        raise ValueError(f"{what} must be (n, {len(feature_names)}), got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return matrix
