"""Analysis: feature selection and raw-to-stem regression.

Pure computation, scikit-learn estimators that know nothing of the store:

- :mod:`~stemstore.analysis.matrix`: non-finite values handled the way the method says;
- :mod:`~stemstore.analysis.selection`: :class:`~stemstore.analysis.selection.RandomForestSelector`;
- :mod:`~stemstore.analysis.regression`: the models, their tuning and cross-validation;
- :mod:`~stemstore.analysis.plots`: the figures (matplotlib, no backend switch).

The stages that run them on a store and record the runs:
:mod:`~stemstore.analysis.selection_runs` and :mod:`~stemstore.analysis.regression_runs`.
"""
