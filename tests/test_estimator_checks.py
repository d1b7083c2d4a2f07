"""scikit-learn's estimator checks on the project's estimators.

Small configurations keep the checks quick: a handful of tiny forests for the selector (and
``min_class_count=1``, since some checks fit on a few rows), two cheap regressors for the average.
"""

from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from stemstore.regression import AveragingRegressor
from stemstore.selection import RandomForestSelector

ESTIMATORS = [
    RandomForestSelector(n_forests=2, n_trees=5, n_fits_interp=2, n_trees_interp=5,
                         n_fits_pred=2, n_trees_pred=5, min_class_count=1, random_state=0),
    AveragingRegressor([("lr", LinearRegression()), ("knn", KNeighborsRegressor(n_neighbors=3))]),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
