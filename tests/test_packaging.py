"""A non-editable install works outside the repository: migrations, views and the catalog
travel inside the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_installed_package_works_outside_the_repo(tmp_path):
    # built from a copy, so that a stale build/ folder of an earlier layout cannot leak in
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "*.egg-info", "__pycache__", "*.duckdb*", "demo-output"
        ),
    )
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    for packaged in (
        "stemstore/data/feature_catalog.csv",
        "stemstore/migrations/env.py",
        "stemstore/migrations/versions/0001_initial_schema.py",
        "stemstore/queries/table2.sql",
        "stemstore/web/templates/pair.html",
        "stemstore/web/static/style.css",
    ):
        assert (target / packaged).is_file(), packaged
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("STEMSTORE_DB", None)

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "stemstore.cli.app", *a],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )

    result = run("init")
    assert result.returncode == 0, result.stderr
    assert (work / "stemstore.duckdb").is_file()
    result = run("report", "table2", "--format", "csv")
    assert result.returncode == 0, result.stderr
    # only stemstore* packages land in site-packages: the cli/ folder is installed as stemstore.cli
    assert {p.name.split("-")[0] for p in target.iterdir()} - {"bin"} == {"stemstore"}
    assert (target / "stemstore" / "cli" / "app.py").is_file()
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util, stemstore; stemstore.Store; stemstore.RandomForestSelector; "
            "print(stemstore.__file__, importlib.util.find_spec('cli'))",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith(str(target))
    assert probe.stdout.split()[-1] == "None"  # no top-level package named cli
