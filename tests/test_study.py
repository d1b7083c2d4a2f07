"""The main job end to end at tiny sizes: demo (synth → ingest → segment → extract → select →
regress → tables and figures), its rerun reusing everything, and the README's commands as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEMSTORE = [sys.executable, "-m", "stemstore.cli.app"]
TABLE_HEADINGS = ["Table 2", "Table 4", "Table 5", "Table 6", "Table 7"]


def stemstore(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("STEMSTORE_DB", None)
    result = subprocess.run([*STEMSTORE, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, f"stemstore {' '.join(args)} failed:\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    args = (
        "demo",
        "--multitracks",
        "24",
        "--seconds",
        "4",
        "--window",
        "3",
        "--group",
        "vocal",
        "--workers",
        "2",
    )
    first = stemstore(*args, cwd=work)
    second = stemstore(*args, cwd=work)
    return work, first, second


def test_demo_prints_the_tables_and_writes_the_figures(demo_run):
    work, first, _ = demo_run
    for heading in TABLE_HEADINGS:
        assert heading in first.stdout, heading
    figures = work / "demo-output" / "figures"
    for name in ("fig2-importance-vocal.png", "fig3-oob-vocal.png", "fig4-pca-vocal.png"):
        png = (figures / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000, name
    assert (work / "demo-output" / "stemstore.duckdb").is_file()
    assert "vocal: selecting features" in first.stderr  # progress and stages are shown
    # it ends with the command that opens the demo store in the browser
    assert first.stdout.strip().splitlines()[-1].endswith("stemstore serve --db demo-output/stemstore.duckdb")


def test_selection_on_compressed_stems_finds_dynamic_descriptors(demo_run):
    """Synthetic vocal stems are always compressed and peak-limited: raw-vs-stem selection
    keeps dynamic descriptors among f_p1."""
    work, _, _ = demo_run
    db = str(work / "demo-output" / "stemstore.duckdb")
    result = stemstore(
        "query",
        "SELECT f.descriptor FROM selection_features sf "
        "JOIN features f ON f.id = sf.feature_id JOIN runs r ON r.id = sf.run_id "
        "WHERE r.group_name = 'vocal' AND sf.in_fp1",
        "--format",
        "csv",
        "--db",
        db,
        cwd=work,
    )
    descriptors = result.stdout.split()[1:]
    assert descriptors, "f_p1 is empty"
    assert any(d.startswith("dynamic.") for d in descriptors), sorted(set(descriptors))


def test_demo_rerun_reuses_everything(demo_run):
    _, first, second = demo_run
    assert "reusing" in second.stderr and "24 unchanged" in second.stderr
    assert re.search(r"vocal: reused selection run \d+, regression run \d+", second.stderr)
    assert "selecting features" not in second.stderr
    # the same results are printed
    table7 = lambda out: out[out.index("Table 7") :]  # noqa: E731
    assert table7(first.stdout) == table7(second.stdout)


def test_every_group_report_shows_a_custom_group(demo_run):
    """Any instrument subset: a new group over the same labels runs and reports like a default one."""
    work, _, _ = demo_run
    db = str(work / "demo-output" / "stemstore.duckdb")
    stemstore(
        "groups", "set", "my-voices", "male singer", "female singer", "male rapper", "--db", db, cwd=work
    )
    result = stemstore("study", "--group", "my-voices", "--window", "3", "--db", db, cwd=work)
    assert "Table 4" in result.stdout and "my-voices" in result.stdout
    for report in ("table4", "table5", "table6", "table7"):
        out = stemstore("report", report, "--group", "my-voices", "--format", "csv", "--db", db, cwd=work)
        assert "my-voices" in out.stdout, report


def readme_blocks(language: str, section: str | None = None) -> list[str]:
    text = (ROOT / "README.md").read_text()
    if section is not None:
        start = text.index(f"## {section}")
        end = text.find("\n## ", start + 1)
        text = text[start : end if end > 0 else None]
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_readme_synthetic_quickstart_and_sql_as_written(tmp_path):
    """The README's synthetic-corpus quickstart, command by command, then its SQL examples."""
    [block] = readme_blocks("sh", "Quickstart on a synthetic corpus")
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands and all(c.startswith("stemstore ") for c in commands)
    for command in commands:
        stemstore(*_split(command)[1:], cwd=tmp_path)
    assert (tmp_path / "fig2-vocal.png").read_bytes().startswith(b"\x89PNG")
    # the queries a reader runs (the README's other SQL is what an administrator runs for roles)
    sql_blocks = [b for b in readme_blocks("sql") if b.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert len(sql_blocks) == 2
    centroid = stemstore("query", sql_blocks[0], "--format", "csv", "--db", "try.duckdb", cwd=tmp_path)
    lines = centroid.stdout.strip().splitlines()
    assert lines[0] == "role,segments,mean_spectral_centroid_hz"
    assert [line.split(",")[0] for line in lines[1:]] == ["raw", "stem"]
    stemstore("query", sql_blocks[1], "--format", "csv", "--db", "try.duckdb", cwd=tmp_path)


def _split(command: str) -> list[str]:
    import shlex

    return shlex.split(command)


def test_readme_python_api_as_written(tmp_path, monkeypatch):
    """The README's Python example runs on a store (here: the reference bass segments)."""
    from stemstore.store import bulk
    from stemstore.store.connection import Store

    from tests.support import REFERENCE, require_shared

    store = Store.open(str(tmp_path / "stemstore.duckdb"), create=True, check_schema=False)
    store.init()
    bulk.import_features(store, require_shared(REFERENCE / "bass-segments.csv"))
    store.close()
    [block] = readme_blocks("python")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert len(namespace["bass"]) == 136
    assert len(namespace["pipeline"][0].f_pred_names_) >= 1
