"""Figures of the regression stage (METHOD.md section 5): "Fig. 4", PCA of raw vs stem segments.

Kept apart from ``stemstore/plots.py`` for now; it will be merged there later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

RAW_COLOUR = "#1f77b4"
STEM_COLOUR = "#d62728"


def plot_pca(
    raw_values,
    stem_values,
    feature_names: Sequence[str],
    path: str | Path | None = None,
    title: str | None = None,
) -> Figure:
    """Scatter of raw and stem f_pred vectors projected by PCA to two dimensions ("Fig. 4").

    ``raw_values`` and ``stem_values`` are (n, n_features) arrays or DataFrames (the columns named
    in ``feature_names`` are taken from a DataFrame); the two sets need not be paired. Features
    are standardised over both sets together before PCA, because f_pred features differ by
    orders of magnitude and unscaled PCA would show only the largest one. Axis labels give each
    component's share of the variance. Saves a PNG to ``path`` when given; returns the figure.
    """
    feature_names = list(feature_names)
    raw = _as_matrix(raw_values, feature_names, "raw_values")
    stem = _as_matrix(stem_values, feature_names, "stem_values")
    if len(raw) + len(stem) < 2:
        raise ValueError("PCA needs at least two segments in total")
    if len(feature_names) < 2:
        raise ValueError("a 2-D PCA needs at least two features")

    both = StandardScaler().fit_transform(np.vstack([raw, stem]))
    pca = PCA(n_components=2)
    projected = pca.fit_transform(both)
    raw_2d, stem_2d = projected[: len(raw)], projected[len(raw):]
    explained = pca.explained_variance_ratio_ * 100

    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(raw_2d[:, 0], raw_2d[:, 1], s=18, alpha=0.7, color=RAW_COLOUR, label=f"raw (n={len(raw)})")
    ax.scatter(stem_2d[:, 0], stem_2d[:, 1], s=18, alpha=0.7, color=STEM_COLOUR, marker="^",
               label=f"stem (n={len(stem)})")
    ax.set_xlabel(f"PC 1 ({explained[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.1f}% of variance)")
    ax.set_title(title or f"PCA of {len(feature_names)} f_pred features, raw vs stem")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    return fig


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
