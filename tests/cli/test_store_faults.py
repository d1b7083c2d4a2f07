"""The fault table: what a hostile or unlucky user does to the store, and what they must see.

Each row names a fault, the backends it is tried on, a setup (files and earlier commands; it
returns the command line to try), the fragment the one line on stderr must hold and the exit
status. One test walks the table: the command fails with that line and that status, never a
traceback, and nothing stored changed (every table compared before and after; a run recorded
as ``failed`` is the only thing a failure may add). The next fault is one more row.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
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


def predict_truncated(case: Case) -> list[str]:
    wav = sorted(case.synthetic.glob("*/*_RAW/*.wav"))[0]
    cut = case.tmp / "cut.wav"
    data = wav.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return ["predict", str(cut), "--group", "bass"]


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
    Fault("predict a truncated WAV", BOTH, predict_truncated, "truncated: the data chunk declares"),
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


# -- faults of the world around the store: other processes, other applications, the server, the
# disk. Each needs more than a setup (a process holding a lock, a server stopped, a full disk),
# so each is a test of its own, held to the same standard: one line, non-zero exit, nothing lost.
def cli_process(*args: str) -> subprocess.Popen:
    """The CLI in a process of its own, as a second user would start it."""
    code = "from stemstore.cli.app import main; main()"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def one_line(stderr: str, fragment: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], stderr


def test_second_writer_waits_on_postgresql(pg_cluster):
    from stemstore.store.connection import writer_lock_key

    name = f"f_{uuid.uuid4().hex[:12]}"
    db = pg_cluster.create_database(name)
    runner.invoke(app, ["init", "--db", db], catch_exceptions=False)
    holder = sa.create_engine(db)
    with holder.connect() as conn:  # the first writer
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": writer_lock_key(name)})
        second = cli_process("groups", "set", "mine", "bass", "--db", db)
        waiting = second.stderr.readline()
        assert "waiting for another writer" in waiting, waiting
        assert second.poll() is None  # blocked, not failed
        conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": writer_lock_key(name)})
    holder.dispose()
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0 and "Traceback" not in err, err
    with Store.open(db) as store:
        # written once the first writer let go (a group counts its own name as a label)
        assert store.group_instruments("mine") == ["bass", "mine"]


def test_second_writer_on_duckdb_is_one_line(tmp_path):
    db = str(tmp_path / "store.duckdb")
    runner.invoke(app, ["init", "--db", db], catch_exceptions=False)
    before = stored(db)
    code = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code, db], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        result = runner.invoke(app, ["groups", "set", "mine", "bass", "--db", db])
        assert result.exit_code == 1
        one_line(result.stderr, "is in use by another process")
        assert f"PID {holder.pid}" in result.stderr or f"pid {holder.pid}" in result.stderr, result.stderr
    finally:
        holder.kill()
        holder.wait()
    assert stored(db) == before


@pytest.mark.parametrize(
    "foreign, fragment",
    [
        ("CREATE TABLE runs (id integer, note text); INSERT INTO runs VALUES (1, 'theirs')", "runs"),
        (
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);"
            " INSERT INTO alembic_version VALUES ('0fthe1rs')",
            "revision 0fthe1rs, not a stemstore revision",
        ),
    ],
    ids=["clashing-table", "foreign-alembic-version"],
)
def test_another_applications_database_is_refused(pg_cluster, foreign, fragment):
    db = pg_cluster.create_database(f"f_{uuid.uuid4().hex[:12]}")
    engine = sa.create_engine(db)
    with engine.begin() as conn:
        for statement in foreign.split(";"):
            conn.execute(sa.text(statement))

    def theirs() -> dict[str, list]:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            return {t: sorted(conn.execute(sa.text(f"SELECT * FROM {t}"))) for t in names}

    before = theirs()
    for command in (["init"], ["status"], ["ingest", "/nonexistent"]):
        result = runner.invoke(app, [*command, "--db", db])
        assert result.exit_code == 1, (command, result.output)
        one_line(result.stderr, fragment)
    assert theirs() == before  # their tables untouched, none of ours added
    engine.dispose()


def extraction_is_whole(db: str) -> int:
    """Assert every extracted segment has all its values and no values lack an extraction;
    return how many segments are extracted."""
    with Store.open(db) as store, store.engine.connect() as conn:
        per_segment = dict(
            conn.execute(sa.text("SELECT segment_id, count(*) FROM feature_values GROUP BY segment_id")).all()
        )
        extracted = set(conn.scalars(sa.text("SELECT segment_id FROM segment_extractions")))
    assert set(per_segment) == extracted
    assert len(set(per_segment.values())) <= 1, per_segment  # no segment half-written
    return len(extracted)


def test_server_stopped_mid_extract(tmp_path, synthetic):
    from tests.pgcluster import PostgresCluster

    cluster = PostgresCluster(port=55400 + os.getpid() % 500).start()  # its own: it is stopped
    try:
        db = cluster.create_database("lost")
        case = Case(tmp_path, db, synthetic)
        case.run("init")
        case.run("ingest", str(case.corpus()))
        case.run("segment", "--window", "1")
        extract = cli_process("extract", "--db", db)
        engine = sa.create_engine(db)
        deadline = time.monotonic() + 120
        with engine.connect() as conn:
            while not conn.scalar(sa.text("SELECT count(*) FROM segment_extractions")):
                assert extract.poll() is None and time.monotonic() < deadline, extract.stderr.read()
                conn.rollback()
                time.sleep(0.1)
        engine.dispose()
        cluster.halt()
        _out, err = extract.communicate(timeout=60)
        assert extract.returncode == 1, err
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert "Traceback" not in err and len(lines) == 1, err
        assert "lost the connection to the database server" in lines[0], err
        cluster.resume()
        # the cluster runs with synchronous_commit=off, so the last commits may be lost in the
        # crash: what must hold is that no segment is half-written and a rerun completes
        extraction_is_whole(db)
        case.run("extract")
        assert extraction_is_whole(db) == 12
    finally:
        cluster.stop()


def test_a_failed_run_whose_server_is_gone_reports_the_first_error():
    """The run's failure cannot be recorded once the server is gone: the error that stopped
    the run is still the one raised (not the failed attempt to record it)."""
    from stemstore.store.connection import Store
    from tests.pgcluster import PostgresCluster

    cluster = PostgresCluster(port=55000 + os.getpid() % 300).start()
    try:
        store = Store.open(cluster.create_database("gone"), create=True, check_schema=False)
        store.init()
        with pytest.raises(RuntimeError, match="the step itself"):
            with store.run("extraction", params={}):
                cluster.halt()
                raise RuntimeError("the step itself failed")
        store.close()
    finally:
        cluster.stop()


@pytest.mark.parametrize(
    "message",
    [
        "consuming input failed: server closed the connection unexpectedly",
        'connection failed: connection to server on socket "/tmp/x/.s.PGSQL.5432" failed: '
        "FATAL:  the database system is shutting down",
        "connection failed: connection to server at 10.0.0.5, port 5432 failed: Connection refused",
    ],
)
def test_a_lost_server_is_one_line_whatever_the_driver_says(message):
    import psycopg

    from stemstore.cli.common import describe_database_error

    error = sa.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError(message))
    line = describe_database_error(error, "postgresql+psycopg://me@/stems")
    assert line is not None and line.startswith("lost the connection to the database server"), line
    not_lost = sa.exc.OperationalError(
        "SELECT 1", {}, psycopg.OperationalError("syntax error at or near SELEC")
    )
    assert describe_database_error(not_lost, None) is None


@pytest.mark.parametrize(
    "sqlstate, message",
    [
        ("57P01", "Verbindung wird abgebrochen aufgrund von Anweisung des Administrators"),
        ("57P03", "das Datenbanksystem startet"),
        ("08006", "la connexion au serveur a été perdue"),
    ],
)
def test_a_lost_server_is_recognised_by_its_sqlstate_in_any_language(sqlstate, message):
    import psycopg

    from stemstore.cli.common import describe_database_error

    error = sa.exc.OperationalError("SELECT 1", {}, psycopg.errors.lookup(sqlstate)(message))
    line = describe_database_error(error, "postgresql+psycopg://me@/stems")
    assert line is not None and line.startswith("lost the connection to the database server"), line
    assert message in line


def test_a_server_that_cannot_start_a_session_on_a_full_disk_says_so():
    """A new PostgreSQL session first writes the database's relation-cache file; on a full disk
    it fails with a bare "could not write init file", which must still read as a full disk."""
    import psycopg

    from stemstore.store.connection import _explain_connect_error

    url = "postgresql+psycopg://postgres@/stems"
    failed = sa.exc.OperationalError(
        None, None, psycopg.OperationalError("connection failed: FATAL:  could not write init file")
    )
    line = _explain_connect_error(url, failed)
    assert line.startswith(f"cannot open the store {url}: ") and "no space left on device" in line, line
    other = sa.exc.OperationalError(None, None, psycopg.OperationalError("password authentication failed"))
    assert "no space" not in _explain_connect_error(url, other)


@pytest.fixture
def small_disk():
    """A 64 MiB tmpfs: a disk that can be filled in a moment. Mounting needs root, as CI has;
    without it the test fails rather than skip, so that the fault is never silently untried."""
    disk = Path(tempfile.mkdtemp(prefix="stemstore-disk-"))  # outside tmp_path: postgres reaches it
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs (the disk-full tests need root): {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)
    disk.rmdir()


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; the filler file is returned so it can be removed."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # unbuffered: nothing left to flush at close
    try:
        for block in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def disk_full_then_rerun(case: Case, disk: Path, shown: str, before_filling=lambda: None) -> None:
    """Extract on a full disk fails with one line naming the store, keeps what was stored,
    and completes after space is freed. ``before_filling`` runs just before the disk fills."""
    case.run("ingest", str(case.corpus()))
    case.run("segment", "--window", "1")
    before = stored(case.db)
    before_filling()
    filler = fill(disk)
    result = runner.invoke(app, ["extract", "--db", case.db])
    filler.unlink()
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert "no space left on device" in lines[0] and shown in lines[0], lines[0]
    after = stored(case.db)
    for table, rows in before.items():  # what was stored is all still there
        assert all(row in after[table] for row in rows), table
    extraction_is_whole(case.db)
    case.run("extract")
    assert extraction_is_whole(case.db) > 0


def test_disk_full_on_duckdb(small_disk, tmp_path, synthetic):
    db = str(small_disk / "store.duckdb")
    case = Case(tmp_path, db, synthetic)
    case.run("init")
    disk_full_then_rerun(case, small_disk, db)


def drop_relation_cache_files(disk: Path, start_session) -> None:
    """Remove the databases' relation-cache files on ``disk`` (PostgreSQL's own cache, rebuilt
    by the next session), so that the next session must write one: on a full disk the server
    then refuses the session itself. ``start_session`` opens and closes a session first: the
    server also drops the file on its own (autovacuum updating a catalog's statistics), and a
    new session writes it again, so that it is certainly there to be removed."""
    start_session()
    cache_files = list(disk.glob("PG_*/*/pg_internal.init"))
    assert cache_files, f"no relation-cache file under {disk}"
    for path in cache_files:
        path.unlink()


@pytest.fixture
def pg_on_small_disk(small_disk, pg_cluster):
    """A PostgreSQL database whose tablespace is ``small_disk``: yields its name and the
    connection arguments of the cluster's superuser."""
    import psycopg

    name = f"f_{uuid.uuid4().hex[:12]}"
    shutil.chown(small_disk, "postgres")
    space = f"small_{name}"
    admin = dict(host=str(pg_cluster.socket_dir), port=pg_cluster.port, user=pg_cluster.user)
    with psycopg.connect(**admin, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE TABLESPACE {space} LOCATION '{small_disk}'")
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 TABLESPACE {space}')
    try:
        yield name, admin
    finally:
        with psycopg.connect(**admin, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f"DROP TABLESPACE IF EXISTS {space}")


@pytest.mark.parametrize("full_when", ["writing", "opening a session"])
def test_disk_full_on_postgresql(small_disk, tmp_path, synthetic, pg_cluster, pg_on_small_disk, full_when):
    import psycopg

    name, admin = pg_on_small_disk
    case = Case(tmp_path, pg_cluster.url(name), synthetic)
    case.run("init")
    if full_when == "writing":
        disk_full_then_rerun(case, small_disk, name)
    else:

        def start_session() -> None:
            psycopg.connect(**admin, dbname=name).close()

        disk_full_then_rerun(
            case, small_disk, name, lambda: drop_relation_cache_files(small_disk, start_session)
        )


def ingest_on_full_disk_then_rerun(case: Case, disk: Path, shown: str, ingested_first: int) -> None:
    """Ingest on a full disk fails with one line naming the store and changes nothing stored;
    once space is freed it stores the new multitracks. ``ingested_first`` of the corpus's
    multitracks are ingested before the disk fills (PostgreSQL needs none: the pages that hold
    earlier rows have room for a few more, so only an empty table must grow onto the disk)."""
    corpus = case.corpus()
    aside = case.tmp / "aside"
    aside.mkdir()
    held_back = sorted(p for p in corpus.iterdir() if p.is_dir())[ingested_first:]
    for folder in held_back:
        folder.rename(aside / folder.name)
    if ingested_first:
        case.run("ingest", str(corpus))
    before = stored(case.db)
    for folder in held_back:
        (aside / folder.name).rename(folder)
    filler = fill(disk)
    result = runner.invoke(app, ["ingest", str(corpus), "--db", case.db])
    filler.unlink()
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert "no space left on device" in lines[0] and shown in lines[0], lines[0]
    assert stored(case.db) == before  # nothing of the new multitracks, nothing earlier lost
    case.run("ingest", str(corpus))
    assert len(stored(case.db)["multitracks"]) == len(before["multitracks"]) + len(held_back)


def test_disk_full_during_ingest_on_duckdb(small_disk, tmp_path, synthetic):
    db = str(small_disk / "store.duckdb")
    case = Case(tmp_path, db, synthetic)
    case.run("init")
    ingest_on_full_disk_then_rerun(case, small_disk, db, ingested_first=2)


def test_disk_full_during_ingest_on_postgresql(small_disk, tmp_path, synthetic, pg_cluster, pg_on_small_disk):
    name, _admin = pg_on_small_disk
    case = Case(tmp_path, pg_cluster.url(name), synthetic)
    case.run("init")
    ingest_on_full_disk_then_rerun(case, small_disk, name, ingested_first=0)
