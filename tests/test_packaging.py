"""A non-editable install works outside the repository: migrations, views and the catalog
travel inside the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_installed_package_works_outside_the_repo(tmp_path):
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
            str(ROOT),
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
    probe = subprocess.run(
        [sys.executable, "-c", "import stemstore, cli; print(stemstore.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert probe.stdout.startswith(str(target))
