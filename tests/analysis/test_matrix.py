"""Non-finite feature values are replaced the way the method says (docs/method.md, section 3)."""

from __future__ import annotations

import numpy as np

from stemstore.analysis.matrix import replace_non_finite


def test_replace_non_finite_follows_the_method():
    matrix = np.array(
        [
            [1.0, np.inf, np.nan, 5.0],
            [np.nan, 2.0, np.nan, -np.inf],
            [3.0, -np.inf, np.nan, 7.0],
            [np.nan, 4.0, np.nan, 6.0],
        ]
    )
    original = matrix.copy()
    cleaned, n_replaced = replace_non_finite(matrix)

    assert n_replaced == 9
    assert np.isfinite(cleaned).all()
    np.testing.assert_array_equal(matrix, original)  # the input is left alone
    np.testing.assert_allclose(cleaned[:, 0], [1.0, 2.0, 3.0, 2.0])  # NaN -> mean of finite
    np.testing.assert_allclose(cleaned[:, 1], [4.0, 2.0, 2.0, 4.0])  # +inf -> max, -inf -> min
    np.testing.assert_allclose(cleaned[:, 2], 0.0)  # nothing finite -> 0
    np.testing.assert_allclose(cleaned[:, 3], [5.0, 5.0, 7.0, 6.0])


def test_replace_non_finite_without_anything_to_replace():
    matrix = np.arange(6.0).reshape(2, 3)
    cleaned, n_replaced = replace_non_finite(matrix)
    assert n_replaced == 0
    np.testing.assert_array_equal(cleaned, matrix)
