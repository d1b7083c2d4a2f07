"""The store commands as a user runs them: one clear line and a non-zero exit on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from stemstore.cli.app import app

from tests.support import REFERENCE, require_shared

runner = CliRunner()


def run(*args: str, db: str | None = None):
    argv = list(args) + (["--db", db] if db else [])
    return runner.invoke(app, argv, catch_exceptions=False)


@pytest.fixture
def cli_db(db_url):
    result = run("init", db=db_url)
    assert result.exit_code == 0, result.output
    return db_url


def test_init_import_export_query_report(cli_db, tmp_path):
    guitar_pairs = require_shared(REFERENCE / "guitar-pairs.csv")
    result = run("import-features", str(guitar_pairs), db=cli_db)
    assert result.exit_code == 0 and "156 new segments" in result.output
    result = run("import-features", str(guitar_pairs), db=cli_db)
    assert result.exit_code == 0 and "nothing new" in result.output
    out = tmp_path / "g.parquet"
    result = run("export", "features", "--group", "guitar", "-o", str(out), db=cli_db)
    assert result.exit_code == 0 and out.stat().st_size > 0
    result = run("query", "SELECT COUNT(*) AS n FROM segments", "--format", "json", db=cli_db)
    assert result.exit_code == 0 and json.loads(result.output) == [{"n": 156}]
    result = run("report", "segments_status", "--group", "guitar", "--format", "csv", db=cli_db)
    assert result.exit_code == 0
    assert "guitar,guitar,raw,78,78" in result.output


def test_features_are_given_comma_separated_or_with_the_option_repeated(cli_db, tmp_path):
    import pandas as pd

    guitar_pairs = require_shared(REFERENCE / "guitar-pairs.csv")
    assert run("import-features", str(guitar_pairs), db=cli_db).exit_code == 0
    names = [c for c in pd.read_csv(guitar_pairs, nrows=0).columns if "." in c][:3]
    out = tmp_path / "g.parquet"
    result = run(
        "export",
        "features",
        "--group",
        "guitar",
        "-o",
        str(out),
        "--features",
        f"{names[0]}, {names[1]}",
        "--features",
        names[2],
        db=cli_db,
    )
    assert result.exit_code == 0, result.output
    assert [c for c in pd.read_parquet(out).columns if c in names] == names
    for command in (
        ["export", "features", "--group", "guitar", "-o", str(out)],
        ["regress", "--group", "guitar"],
    ):
        result = run(*command, "--features", " , ", db=cli_db)
        assert result.exit_code == 1
        assert result.output.strip() == "error: --features is empty: give feature names separated by commas"
    # A name that is wrong in any of the repeated options is reported, not dropped.
    result = run("regress", "--group", "guitar", "--features", "nosuch.a", "--features", names[0], db=cli_db)
    assert result.exit_code == 1 and "nosuch.a" in result.output


def test_groups_commands(cli_db):
    assert run("groups", "set", "my-guitars", "acoustic guitar", "banjo", db=cli_db).exit_code == 0
    listed = run("groups", "list", "--format", "csv", db=cli_db)
    assert '"acoustic guitar, banjo"' in listed.output
    assert run("groups", "delete", "my-guitars", db=cli_db).exit_code == 0
    result = run("groups", "delete", "my-guitars", db=cli_db)
    assert result.exit_code == 1 and result.output.strip() == "error: unknown group 'my-guitars'"


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM segments",
        "DROP TABLE segments",
        "WITH x AS (SELECT 1) INSERT INTO corpora (name, format, created_at) SELECT 'a', 'b', now()",
        "SELECT 1; DELETE FROM segments",
        "UPDATE segments SET stale = true",
        "CREATE TABLE t (a int)",
    ],
)
def test_query_refuses_writes(cli_db, sql):
    before = run("query", "SELECT COUNT(*) AS n FROM corpora", "-f", "csv", db=cli_db).output
    result = run("query", sql, db=cli_db)
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert run("query", "SELECT COUNT(*) AS n FROM corpora", "-f", "csv", db=cli_db).output == before


def test_user_errors_are_one_line(cli_db, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("multitrack,instrument,role,lowLevel.hfc.mean\nA,bass,raw,x\n")
    cases = [
        ["import-features", str(bad)],
        ["import-features", str(tmp_path / "absent.csv")],
        ["report", "nope"],
        ["report", "table2", "--group", "nope"],
        ["export", "features", "--group", "bass", "-o", str(tmp_path / "x.txt")],
        ["query", "SELEC nonsense"],
    ]
    for argv in cases:
        result = run(*argv, db=cli_db)
        assert result.exit_code == 1, argv
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, result.output)


@pytest.mark.parametrize(
    "argv",
    [
        ["select", "--group", "nope"],
        ["regress", "--group", "bass", "--features", "nosuch.feature"],
        ["study", "--group", "nope"],
        ["segment", "--window", "0.1"],
        ["extract", "--workers", "0"],
        ["predict", "/no/such/file.wav", "--group", "bass"],
        ["ingest", "/no/such/corpus"],
        ["plot", "pca", "--group", "nope", "-o", "x.png"],
        ["report", "table6", "--run", "99999"],
    ],
)
def test_pipeline_user_errors_are_one_line(tmp_path, argv):
    db = str(tmp_path / "s.duckdb")
    assert run("init", db=db).exit_code == 0
    result = run(*argv, db=db)
    assert result.exit_code == 1, argv
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, result.output)


def test_demo_in_an_impossible_folder_is_one_line():
    result = runner.invoke(app, ["demo", "--dir", "/dev/null/demo"])
    assert result.exit_code == 1 and result.output.startswith("error: cannot make the demo folder")


def test_missing_store_and_directory(tmp_path):
    result = run("groups", "list", db=str(tmp_path / "none.duckdb"))
    assert result.exit_code == 1 and "run 'stemstore init'" in result.output
    result = run("init", db=str(tmp_path / "no" / "dir" / "s.duckdb"))
    assert result.exit_code == 1 and "directory does not exist" in result.output


def test_store_held_by_another_writer(tmp_path):
    """DuckDB allows one writing process: the second gets a clear line, not a traceback."""
    db = str(tmp_path / "held.duckdb")
    assert run("init", db=db).exit_code == 0
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys, time; c = duckdb.connect({db!r}); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = subprocess.run(
            [sys.executable, "-m", "stemstore.cli.app", "groups", "list", "--db", db],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 1
        assert "in use by another process" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        holder.kill()
        holder.wait()


def test_every_command_has_help_with_an_example():
    import typer.main

    def leaves(command, path):
        subcommands = getattr(command, "commands", None)
        if not subcommands:
            yield path
            return
        for name, sub in subcommands.items():
            yield from leaves(sub, [*path, name])

    commands = list(leaves(typer.main.get_command(app), []))
    assert len(commands) >= 20
    for argv in commands:
        result = runner.invoke(app, [*argv, "--help"])
        assert result.exit_code == 0 and "Example" in result.output, argv


def test_messages_never_show_a_password():
    result = run("init", db="postgresql+psycopg://me:s3cret@127.0.0.1:1/nodb")
    assert result.exit_code == 1 and "cannot open the store" in result.output
    assert "s3cret" not in result.output and "***" in result.output


# The heavy libraries each cost about a second to import; commands that do not compute with
# them must not load them, so that `--help` and `status` answer at once.
HEAVY_MODULES = ("essentia", "sklearn", "scipy", "alembic", "pandas")


def modules_loaded_by(*argv: str) -> set[str]:
    """The HEAVY_MODULES a fresh `stemstore` process has imported when it exits."""
    code = (
        "import atexit, json, sys\n"
        f"heavy = {HEAVY_MODULES!r}\n"
        "atexit.register(lambda: print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))))\n"
        f"sys.argv = ['stemstore', *{list(argv)!r}]\n"
        "from stemstore.cli.app import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_help_and_status_load_no_heavy_library(tmp_path):
    db = str(tmp_path / "store.duckdb")
    assert run("init", db=db).exit_code == 0
    assert modules_loaded_by("--help") == set()
    assert modules_loaded_by("regress", "--help") == set()
    # status reads the store as DataFrames, but never needs Essentia, scikit-learn or Alembic
    assert modules_loaded_by("status", "--db", db) == {"pandas"}
