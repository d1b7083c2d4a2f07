"""The fault table: what a hostile or unlucky user does to the store, and what they must see.

Each row names a fault, the backends it is tried on, a setup (files and earlier commands; it
returns the command line to try), the fragment the one line on stderr must hold and the exit
status. One test walks the table: the command fails with that line and that status, never a
traceback, and nothing stored changed (every table compared before and after; a run recorded
as ``failed`` is the only thing a failure may add). The next fault is one more row.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from stemstore.cli.app import app
from stemstore.store.connection import Store
from stemstore.store.schema import Base

BOTH = ("duckdb", "postgresql")
runner = CliRunner()


@dataclass
class Case:
    """What a row's setup gets: a private folder, the store's URL and a way to run the CLI."""

    tmp: Path
    db: str
    synthetic: Path

    def run(self, *args: str):
        result = runner.invoke(app, [*args, "--db", self.db], catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)
        return result

    def corpus(self, name: str = "corpus") -> Path:
        """A private copy of the module's synthetic corpus (3 multitracks)."""
        return Path(shutil.copytree(self.synthetic, self.tmp / name))


@dataclass
class Fault:
    name: str
    backends: tuple[str, ...]
    setup: Callable[[Case], list[str]]
    message: str  # a fragment of the line on stderr
    exit_code: int = 1
    #: stderr is exactly that one line; else (ingest: progress and one line per rejection)
    #: lines holding the fragment are among others
    only_line: bool = True


# -- setups ---------------------------------------------------------------------------------
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")
)


def ingested_then_bomb(case: Case) -> list[str]:
    corpus = case.corpus()
    case.run("ingest", str(corpus))
    victim = sorted(corpus.glob("*/*_METADATA.yaml"))[0]
    victim.write_text(BOMB + "stems: {}\nstem_dir: s\nraw_dir: r\n")
    return ["ingest", str(corpus)]


def second_corpus_same_names(case: Case) -> list[str]:
    corpus = case.corpus()
    case.run("ingest", str(corpus))
    other = case.corpus("other")
    first = sorted(other.glob("*/*_METADATA.yaml"))[0]
    first.write_text(first.read_text().replace("genre:", "genre: Polka\nold_genre:", 1))
    return ["ingest", str(other)]


def relocate_to_other_files(case: Case) -> list[str]:
    corpus = case.corpus()
    case.run("ingest", str(corpus))
    other = case.corpus("other")
    shutil.rmtree(sorted(p for p in other.iterdir() if p.is_dir())[0])
    return ["corpus", "relocate", str(corpus), str(other)]


def relocate_unknown(case: Case) -> list[str]:
    return ["corpus", "relocate", str(case.tmp / "never"), str(case.tmp)]


def feature_file(case: Case, rows: list[tuple[str, str, str]], name: str = "values.csv") -> Path:
    """A wide feature file of (multitrack, role, pair) rows, instrument bass, two features."""
    from stemstore.store.catalog import feature_names

    first, second = feature_names()[:2]
    lines = [f"multitrack,instrument,role,pair,{first},{second}"]
    lines += [f"{mt},bass,{role},{pair},{i}.5,-{i}.25" for i, (mt, role, pair) in enumerate(rows)]
    path = case.tmp / name
    path.write_text("\n".join(lines) + "\n")
    return path


def import_ingested_name(case: Case) -> list[str]:
    corpus = case.corpus()
    case.run("ingest", str(corpus))
    name = sorted(p.name for p in corpus.iterdir() if p.is_dir())[0]
    return ["import-features", str(feature_file(case, [("Mine", "raw", "p1"), (name, "stem", "p1")]))]


def exported(case: Case) -> Path:
    """A store holding imported values of group bass, so that export has something to write."""
    case.run("import-features", str(feature_file(case, [("A", "raw", "p1"), ("A", "stem", "p1")])))
    return case.tmp


def export_to(path: str) -> Callable[[Case], list[str]]:
    def setup(case: Case) -> list[str]:
        exported(case)
        return ["export", "features", "--group", "bass", "-o", path.format(tmp=case.tmp)]

    return setup


def plot_to(path: str) -> Callable[[Case], list[str]]:
    def setup(case: Case) -> list[str]:
        (case.tmp / "a-file").write_text("x")
        return ["plot", "pca", "--group", "bass", "-o", path.format(tmp=case.tmp)]

    return setup


FAULTS = [
    Fault("yaml alias bomb", BOTH, ingested_then_bomb, "uses YAML aliases (*name)", only_line=False),
    Fault(
        "second corpus, same names",
        BOTH,
        second_corpus_same_names,
        "already belongs to corpus",
        only_line=False,
    ),
    Fault("relocate to other files", BOTH, relocate_to_other_files, "does not hold the same corpus"),
    Fault("relocate an unknown corpus", BOTH, relocate_unknown, "no corpus of the store is at"),
    Fault(
        "import names ingested audio", BOTH, import_ingested_name, "is ingested audio's; imported values need"
    ),
    Fault("export to a directory", ("duckdb",), export_to("{tmp}"), "is a directory: name a file"),
    Fault(
        "export under a file", ("duckdb",), export_to("{tmp}/values.csv/x.csv"), "is a file, not a directory"
    ),
    Fault(
        "export as .xlsx", ("duckdb",), export_to("{tmp}/x.xlsx"), "'.xlsx' is not a file type it can write"
    ),
    Fault(
        "export where nothing may be written", ("duckdb",), export_to("/sys/x.csv"), "cannot write /sys/x.csv"
    ),
    Fault("plot to a directory", ("duckdb",), plot_to("{tmp}"), "is a directory: name a file"),
    Fault("plot under a file", ("duckdb",), plot_to("{tmp}/a-file/x.png"), "is a file, not a directory"),
    Fault("plot without extension", ("duckdb",), plot_to("{tmp}/fig"), "no extension is not a file type"),
]


# -- the walk ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    from stemstore.synth.corpus import synthesize_corpus

    root = tmp_path_factory.mktemp("synthetic") / "corpus"
    synthesize_corpus(root, n_multitracks=3, seconds=2.0, seed=7, workers=1)
    return root


def stored(db: str) -> dict[str, list[tuple]]:
    """Every table's rows, sorted; of runs only those that did not fail, without times."""
    with Store.open(db) as store, store.engine.connect() as conn:
        out = {}
        for table in Base.metadata.sorted_tables:
            query = sa.select(table)
            if table.name == "runs":
                query = sa.select(table.c.id, table.c.kind, table.c.status).where(table.c.status != "failed")
            out[table.name] = sorted(map(tuple, conn.execute(query)), key=repr)
        return out


@pytest.mark.parametrize(
    "fault, backend",
    [pytest.param(f, b, id=f"{f.name.replace(' ', '-')}-{b}") for f in FAULTS for b in f.backends],
)
def test_fault(fault: Fault, backend: str, request, tmp_path, synthetic):
    if backend == "duckdb":
        db = str(tmp_path / "store.duckdb")
    else:
        db = request.getfixturevalue("pg_cluster").create_database(f"f_{uuid.uuid4().hex[:12]}")
    case = Case(tmp_path, db, synthetic)
    case.run("init")
    argv = fault.setup(case)
    before = stored(db)
    result = runner.invoke(app, [*argv, "--db", db])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output + result.stderr
    assert result.exit_code == fault.exit_code, result.output
    lines = [line for line in result.stderr.splitlines() if fault.message in line]
    assert lines, result.stderr
    if fault.only_line:
        assert result.stderr.splitlines() == lines and lines[0].startswith("error: "), result.stderr
    assert stored(db) == before
