"""stemstore: a database-backed dataset and feature store for stem-processing research.

The public API is the names in ``__all__``:

- :class:`Store`, the database (DuckDB file or PostgreSQL);
- the pipeline's stages, in order: :func:`ingest` (a corpus's metadata and audio files),
  :func:`segment` (analysis windows), :func:`extract` (Essentia features), :func:`select`
  (random-forest feature selection), :func:`regress` (raw-to-stem regression), and
  :func:`run_study`, which runs select, regress and the reports for one group;
- :func:`feature_matrix`, the stored feature values as a wide table;
- the estimators :class:`RandomForestSelector` (VSURF feature selection) and
  :class:`AveragingRegressor` (the mean of several regressors), both scikit-learn compatible;
- :class:`StemstoreError`, the error a user can cause and fix.

Names are imported on first use (PEP 562), so ``import stemstore`` stays fast and does not load
Essentia, scikit-learn or the database drivers until a name that needs them is used.

Examples
--------
>>> import stemstore
>>> selector = stemstore.RandomForestSelector.from_preset("fast", random_state=0)
>>> selector.n_forests, selector.n_trees
(10, 200)
>>> issubclass(stemstore.StemstoreError, Exception)
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from stemstore.errors import StemstoreError

__version__ = "0.1.0"

#: Public name -> module (relative to this package) that defines it, imported on first use.
_LAZY: dict[str, str] = {
    "Store": ".store.connection",
    "feature_matrix": ".store.bulk",
    "ingest": ".corpus.ingest",
    "segment": ".segments",
    "extract": ".features.extraction",
    "select": ".analysis.selection_runs",
    "regress": ".analysis.regression_runs",
    "run_study": ".study",
    "RandomForestSelector": ".analysis.selection",
    "AveragingRegressor": ".analysis.regression",
}

__all__ = [
    "Store",
    "ingest",
    "segment",
    "extract",
    "select",
    "regress",
    "run_study",
    "feature_matrix",
    "RandomForestSelector",
    "AveragingRegressor",
    "StemstoreError",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from .analysis.regression import AveragingRegressor
    from .analysis.regression_runs import regress
    from .analysis.selection import RandomForestSelector
    from .analysis.selection_runs import select
    from .corpus.ingest import ingest
    from .features.extraction import extract
    from stemstore.segments import segment
    from .store.bulk import feature_matrix
    from .store.connection import Store
    from stemstore.study import run_study


def __getattr__(name: str) -> Any:
    try:
        module_name = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name, __name__), name)
    # cache it, so the next access is a plain attribute lookup
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(__all__) | {"__version__"})
