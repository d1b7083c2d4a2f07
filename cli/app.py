"""The ``stemstore`` command line. Commands live in one module per part of the pipeline;
importing them registers them on the app."""

from __future__ import annotations

from . import store_commands  # noqa: F401
from . import corpus_commands  # noqa: F401
from . import pipeline_commands  # noqa: F401
from . import selection_commands  # noqa: F401
from . import regression_commands  # noqa: F401
from . import study_commands  # noqa: F401
from . import curation_commands  # noqa: F401
from .common import app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
