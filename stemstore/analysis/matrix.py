"""The matrix an analysis reads: stored feature values with non-finite values handled.

Values are stored as Essentia computed them, NaN and inf included; the method replaces them only
when a set of segments is analysed (docs/method.md, section 3), and the analysis run records how
many it replaced.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stemstore.store.bulk import META_COLUMNS, feature_matrix
from stemstore.store.connection import Store


def replace_non_finite(matrix: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace non-finite values column by column (docs/method.md, section 3); returns (copy, count).

    ``matrix`` is (segments x features). In each column NaN becomes the mean of the column's
    finite values, +inf its largest finite value and -inf its smallest; a column without any
    finite value becomes 0. The input is not modified.
    """
    data = np.array(matrix, dtype=np.float64, copy=True)
    if data.ndim != 2:
        raise ValueError(f"expected a 2-D (segments x features) matrix, got shape {data.shape}")
    finite = np.isfinite(data)
    n_replaced = int(data.size - np.count_nonzero(finite))
    if n_replaced == 0:
        return data, 0

    n_finite = finite.sum(axis=0)
    any_finite = n_finite > 0
    col_mean = np.where(any_finite, np.where(finite, data, 0.0).sum(axis=0) / np.maximum(n_finite, 1), 0.0)
    col_max = np.where(any_finite, np.where(finite, data, -np.inf).max(axis=0), 0.0)
    col_min = np.where(any_finite, np.where(finite, data, np.inf).min(axis=0), 0.0)

    rows, cols = np.nonzero(~finite)
    bad = data[rows, cols]
    data[rows, cols] = np.where(
        np.isnan(bad), col_mean[cols], np.where(bad > 0, col_max[cols], col_min[cols])
    )
    return data, n_replaced


def analysis_matrix(
    store: Store,
    *,
    group: str | None = None,
    instruments: list[str] | None = None,
    features: list[str] | None = None,
    segment_ids: list[int] | None = None,
) -> tuple[pd.DataFrame, int]:
    """The wide matrix an analysis reads, with non-finite values replaced (docs/method.md, section 3).

    Same rows and columns as :func:`stemstore.store.bulk.feature_matrix` (by default the
    features every selected segment has a value for), but NaN is replaced by the feature's
    mean over these segments and +/-inf by its largest/smallest finite value. Returns the
    matrix and how many values were replaced (to record on the analysis run).
    """
    wide = feature_matrix(
        store,
        group=group,
        instruments=instruments,
        features=features,
        segment_ids=segment_ids,
        complete=features is None,
    )
    columns = [c for c in wide.columns if c not in META_COLUMNS]
    if not columns or wide.empty:
        return wide, 0
    cleaned, n_replaced = replace_non_finite(wide[columns].to_numpy(dtype=np.float64))
    wide = wide.copy()
    wide[columns] = cleaned
    return wide, n_replaced
