"""scikit-learn's estimator checks on the project's estimators.

Small configurations keep the checks quick: a handful of tiny forests for the selector (and
``min_class_count=1``, since some checks fit on a few rows), two cheap regressors for the average.
The array-API check is left out: the estimators are numpy-only and claim no array-API support
(scikit-learn would skip that check anyway unless SCIPY_ARRAY_API is set).
"""

import pytest
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor
from sklearn.utils.estimator_checks import estimator_checks_generator

from stemstore.analysis.regression import AveragingRegressor
from stemstore.analysis.selection import RandomForestSelector

ESTIMATORS = [
    RandomForestSelector(
        n_forests=2,
        n_trees=5,
        n_fits_interp=2,
        n_trees_interp=5,
        n_fits_pred=2,
        n_trees_pred=5,
        min_class_count=1,
        random_state=0,
    ),
    AveragingRegressor([("lr", LinearRegression()), ("knn", KNeighborsRegressor(n_neighbors=3))]),
]
NOT_CLAIMED = {"check_array_api_input"}


def _name(check) -> str:
    return getattr(check, "func", check).__name__


CHECKS = [
    (estimator, check)
    for base in ESTIMATORS
    for estimator, check in estimator_checks_generator(base, legacy=True)
    if _name(check) not in NOT_CLAIMED
]


@pytest.mark.parametrize(
    "estimator, check", CHECKS, ids=[f"{type(e).__name__}-{_name(c)}" for e, c in CHECKS]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
