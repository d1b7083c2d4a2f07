"""The ``stemstore`` command line. Commands live in one module per part of the pipeline;
importing them registers them on the app."""

from __future__ import annotations

import gc

from . import store_commands  # noqa: F401
from . import corpus_commands  # noqa: F401
from . import pipeline_commands  # noqa: F401
from . import selection_commands  # noqa: F401
from . import regression_commands  # noqa: F401
from . import study_commands  # noqa: F401
from . import curation_commands  # noqa: F401
from .common import app


def main() -> None:
    try:
        app()
    finally:
        # The process ends here. Without this, interpreter shutdown spends ~0.7 s in the garbage
        # collector walking the objects that scipy, scikit-learn and pandas create at import.
        # Every command has closed its store and files by now, so no finaliser is waiting on it.
        gc.freeze()


if __name__ == "__main__":
    main()
