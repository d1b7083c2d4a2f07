"""The package's declared public API: ``import stemstore`` and its ``__all__``."""

import subprocess
import sys

import stemstore

HOME = {
    "Store": "stemstore.store.connection",
    "ingest": "stemstore.corpus.ingest",
    "segment": "stemstore.segments",
    "extract": "stemstore.features.extraction",
    "select": "stemstore.analysis.selection_runs",
    "regress": "stemstore.analysis.regression_runs",
    "run_study": "stemstore.study",
    "feature_matrix": "stemstore.store.bulk",
    "RandomForestSelector": "stemstore.analysis.selection",
    "AveragingRegressor": "stemstore.analysis.regression",
    "StemstoreError": "stemstore.errors",
}


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (no module imported yet) and return its stdout."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_public_names_are_exactly_all():
    assert sorted(stemstore.__all__) == sorted(HOME)
    assert len(set(stemstore.__all__)) == len(stemstore.__all__)
    public = {name for name in dir(stemstore) if not name.startswith("_")}
    assert public == set(stemstore.__all__)


def test_every_public_name_resolves():
    for name in stemstore.__all__:
        assert getattr(stemstore, name) is not None, name


def test_unknown_name_is_an_attribute_error():
    try:
        stemstore.no_such_name  # noqa: B018 (the attribute access is the test)
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("stemstore.no_such_name did not raise")


def test_names_are_the_objects_of_their_modules():
    # In a fresh interpreter, so that no submodule was imported before the package's names
    # (importing stemstore.corpus.ingest first binds the module to the package's "ingest").
    code = (
        "import importlib, stemstore\n"
        f"home = {HOME!r}\n"
        "for name in stemstore.__all__:\n"
        "    value = getattr(stemstore, name)\n"
        "    expected = getattr(importlib.import_module(home[name]), name)\n"
        "    assert value is expected and getattr(stemstore, name) is expected, name\n"
        "    assert callable(expected), name\n"
        "ns = {}\n"
        "exec('from stemstore import *', ns)\n"
        "assert sorted(k for k in ns if not k.startswith('__')) == sorted(stemstore.__all__)\n"
        "print('ok')\n"
    )
    assert run_python(code).strip() == "ok"


def test_import_is_light():
    # Essentia, dask and the estimators' libraries load only when a name that needs them is used.
    code = (
        "import sys, stemstore\n"
        "heavy = ('essentia', 'dask', 'sklearn', 'sqlalchemy', 'pandas')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "stemstore.Store, stemstore.RandomForestSelector, stemstore.AveragingRegressor\n"
        "print(sorted(m for m in ('essentia', 'dask') if m in sys.modules))\n"
    )
    assert run_python(code).split("\n")[:2] == ["[]", "[]"]
