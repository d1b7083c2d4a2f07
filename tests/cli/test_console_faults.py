"""Faults of the read-only SQL console (``stemstore query``) and of rendering stored text.

One table of faults, walked by one test: each row is a command run against a fresh store on
the backends named, the one line it must print, its exit status, and the store must be
exactly as before. The next fault is one more row. Escapes are also tried on the query
connection directly, bypassing the parser, to show that the database itself refuses them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from collections.abc import Callable

import psycopg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from stemstore.cli.app import app
from stemstore.errors import StemstoreError
from stemstore.reports import query
from stemstore.store.connection import Store, reader_role
from stemstore.store.schema import Base

from tests.support import build_corpus

runner = CliRunner()

BOTH = ("duckdb", "postgresql")
ENDLESS = {  # a query that would run for hours
    "duckdb": "SELECT count(*) FROM range(1000000000) a, range(1000000000) b WHERE a.range + b.range = -1",
    "postgresql": "SELECT pg_sleep(3600)",
}
#: An endless result that the database produces row by row (PostgreSQL's generate_series in
#: FROM is materialised whole before its first row, so a cross join of two short ones).
ENDLESS_ROWS = (
    "SELECT a.n FROM generate_series(1, 100000) AS a(n) CROSS JOIN generate_series(1, 100000) AS b(m)"
)


def _drop_reader(store: Store) -> None:
    with store.engine.begin() as conn:
        database = conn.exec_driver_sql("SELECT current_database()").scalar()
        role = reader_role(database)
        conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
        conn.exec_driver_sql(f'DROP ROLE "{role}"')


def _reader_may_signal(store: Store) -> None:
    with store.engine.begin() as conn:
        database = conn.exec_driver_sql("SELECT current_database()").scalar()
        conn.exec_driver_sql(f'GRANT pg_signal_backend TO "{reader_role(database)}"')


def _markup_in_stored_names(store: Store) -> None:
    build_corpus(store, store.root, {"take [/] one": [{"code": "S01", "instrument": "banjo", "audio": None}]})
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE tracks SET audio_status = 'missing', path = 'take [/] one.wav', "
            "status_reason = '[bold]gone[/bold] :x:'"
        )


@dataclass
class Fault:
    name: str
    backends: tuple[str, ...]
    argv: list[str] | dict[str, list[str]]  # per backend when the SQL differs
    expected: str  # a fragment of the one line printed (stderr on failure, stdout on success)
    exit_code: int = 1
    setup: Callable[[Store], None] | None = None
    db: str | None = None  # a --db of its own instead of the test's store
    also_expected: list[str] = field(default_factory=list)


FAULTS = [
    Fault("unterminated string", BOTH, ["query", "SELECT 'abc"], "cannot parse the query"),
    Fault("unterminated name", BOTH, ["query", 'SELECT "abc FROM runs'], "cannot parse the query"),
    Fault(
        "markup in a result",
        BOTH,
        ["query", "SELECT '[/]' AS x, '[bold]x[/bold] :x:' AS y"],
        "[/]",
        exit_code=0,
        also_expected=["[bold]x[/bold] :x:"],
    ),
    Fault(
        "markup in stored names",
        BOTH,
        ["status"],
        "take [/] one.wav",
        exit_code=0,
        setup=_markup_in_stored_names,
        also_expected=["take [/] one", "[bold]gone[/bold] :x:"],
    ),
    Fault("file reader", ("duckdb",), ["query", "SELECT * FROM read_csv('/etc/passwd')"], "reaches outside it"),
    Fault("text reader", ("duckdb",), ["query", "SELECT * FROM read_text('/etc/shadow')"], "reaches outside it"),
    Fault("glob", ("duckdb",), ["query", "SELECT * FROM glob('/*')"], "reaches outside it"),
    Fault(
        "download", ("duckdb",), ["query", "SELECT * FROM read_csv('https://example.com/a.csv')"], "reaches outside it"
    ),
    Fault("server file", ("postgresql",), ["query", "SELECT pg_read_file('/etc/passwd')"], "reaches outside it"),
    Fault("reload configuration", ("postgresql",), ["query", "SELECT pg_reload_conf()"], "reaches outside it"),
    Fault("rotate log", ("postgresql",), ["query", "SELECT pg_rotate_logfile()"], "reaches outside it"),
    Fault(
        "terminate sessions",
        ("postgresql",),
        ["query", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"],
        "reaches outside it",
    ),
    Fault(
        "back to the owner's role",
        ("postgresql",),
        ["query", "SELECT set_config('role', session_user, true)"],
        "reaches outside it",
    ),
    Fault(
        "endless query",
        BOTH,
        {b: ["query", sql, "--timeout", "1"] for b, sql in ENDLESS.items()},
        "ran longer than 1 s and was stopped",
    ),
    Fault(
        "no reader role",
        ("postgresql",),
        ["query", "SELECT 1"],
        "has no read-only role",
        setup=_drop_reader,
        also_expected=["CREATE ROLE", "NOSUPERUSER"],
    ),
    Fault(
        "reader may signal sessions",
        ("postgresql",),
        ["query", "SELECT 1"],
        "is a member of pg_signal_backend",
        setup=_reader_may_signal,
    ),
    Fault(
        "display limit",
        BOTH,
        ["query", "SELECT * FROM generate_series(1, 5000)", "-f", "csv"],
        "(the first 1000 rows; --limit 0 shows all of them)",
        exit_code=0,
    ),
    Fault("port not a number", ("duckdb",), ["groups", "list"], "its port is not a number",
          db="postgresql+psycopg://me:secret@localhost:notaport/db"),
    Fault("port out of range", ("duckdb",), ["groups", "list"], "is not between 1 and 65535",
          db="postgresql+psycopg://me@localhost:99999/db"),
    Fault("unknown driver", ("duckdb",), ["groups", "list"], "a store lives in DuckDB or PostgreSQL",
          db="nosuch://me@localhost/db"),
    Fault("unsupported database", ("duckdb",), ["query", "SELECT 1"], "a store lives in DuckDB or PostgreSQL",
          db="mysql://me@localhost/db"),
    Fault("closed port", ("duckdb",), ["groups", "list"], "cannot open the store",
          db="postgresql+psycopg://me@127.0.0.1:1/db"),
]  # fmt: skip


def stored_counts(store: Store) -> dict[str, int]:
    """Rows of every table: what a fault must leave as it was."""
    with store.engine.connect() as conn:
        return {
            name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            for name, table in Base.metadata.tables.items()
        }


@pytest.fixture
def cli_store(request, tmp_path):
    """A store initialised by the CLI: on the test's ``backend`` if it has that parameter (the
    fault table runs each fault on its own backends only), else on each backend (``db_url``)."""
    backend = request.node.callspec.params.get("backend")
    if backend is None:
        db_url = request.getfixturevalue("db_url")
    elif backend == "duckdb":
        db_url = str(tmp_path / "store.duckdb")
    else:
        db_url = request.getfixturevalue("pg_cluster").create_database(f"t_{uuid.uuid4().hex[:12]}")
    result = runner.invoke(app, ["init", "--db", db_url])
    assert result.exit_code == 0, result.output
    store = Store.open(db_url)
    store.root = tmp_path / "corpus"
    store.url_for_tests = db_url
    yield store
    store.close()


@pytest.mark.parametrize(
    ("fault", "backend"),
    [(fault, backend) for fault in FAULTS for backend in fault.backends],
    ids=lambda value: value if isinstance(value, str) else value.name,
)
def test_fault(fault: Fault, backend: str, cli_store: Store):
    db_url = cli_store.url_for_tests
    if fault.setup:
        fault.setup(cli_store)
    before = stored_counts(cli_store)
    cli_store.engine.dispose()  # DuckDB: one process opens a file one way at a time
    argv = fault.argv[backend] if isinstance(fault.argv, dict) else fault.argv
    started = time.monotonic()
    result = runner.invoke(app, [*argv, "--db", fault.db or db_url], catch_exceptions=False)
    assert result.exit_code == fault.exit_code, result.output
    if fault.exit_code:
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "secret" not in result.stderr
        text = lines[0]
    else:
        text = result.output
    for expected in [fault.expected, *fault.also_expected]:
        assert expected in text, text
    assert time.monotonic() - started < 30
    assert stored_counts(cli_store) == before


# -- the database itself refuses: the same statements on the query connection, no parser ----
def _refused_by_engine(store: Store, sql: str) -> str:
    with store.query_connection(timeout=10) as connection:
        if store.dialect == "duckdb":
            with pytest.raises(Exception) as refused:
                connection.raw.execute(sql).fetchall()
        else:
            with connection.raw.cursor() as cursor, pytest.raises(psycopg.Error) as refused:
                cursor.execute(sql)
                cursor.fetchall()
    return str(refused.value)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/shadow')",
        "SELECT * FROM glob('/*')",
        "SELECT * FROM read_csv('https://example.com/a.csv')",
        "SELECT * FROM '/etc/passwd'",  # a file named as a table: a table that does not exist
        "COPY runs TO '/tmp/stemstore-leak.csv'",
        "ATTACH '/tmp/stemstore-other.duckdb' AS other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "DELETE FROM runs",
    ],
)
def test_duckdb_engine_refuses(tmp_path, sql):
    db = str(tmp_path / "s.duckdb")
    with Store.open(db, create=True, check_schema=False) as store:
        store.init()
    with Store.open(db, read_only=True) as store:
        message = _refused_by_engine(store, sql)
    refusals = ("disabled", "locked", "read-only", "Table with name /etc/passwd does not exist")
    assert any(word in message for word in refusals), message
    assert not (tmp_path.parent / "stemstore-leak.csv").exists()


def test_duckdb_query_on_a_store_open_for_writing(tmp_path):
    """A writer store (as a web console may hold) reads through a locked read-only connection."""
    db = str(tmp_path / "s.duckdb")
    with Store.open(db, create=True, check_schema=False) as store:
        store.init()
        message = _refused_by_engine(store, "SELECT * FROM read_csv('/etc/passwd')")
        assert "disabled" in message
        assert query(store, "SELECT count(*) AS n FROM instrument_groups")["n"][0] == 4
        store.set_group("after", ["banjo"])  # still writes afterwards
        assert len(store.groups()) == 5


@pytest.fixture
def pg_store(pg_cluster):
    url = pg_cluster.create_database("console_faults")
    with Store.open(url, create=True, check_schema=False) as store:
        store.init()
    with Store.open(url) as store:
        yield store


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_reload_conf()",
        "SELECT pg_rotate_logfile()",
        "SELECT pg_ls_dir('.')",
        "SELECT lo_export(1, '/tmp/x')",
        "COPY runs TO PROGRAM 'true'",
        "DELETE FROM runs",
        "CREATE TABLE leak (a int)",
    ],
)
def test_postgresql_engine_refuses(pg_store, sql):
    message = _refused_by_engine(pg_store, sql)
    assert any(
        word in message for word in ("permission denied", "read-only transaction", "must be superuser")
    ), message


def test_postgresql_reader_cannot_terminate_the_owners_sessions(pg_store):
    """The most serious escape: any role may end other sessions of its own role, so a query
    run as the owner could kill a running ``stemstore extract``. The reader is not the owner."""
    with pg_store.engine.connect() as writer:
        writer_pid = writer.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        message = _refused_by_engine(pg_store, f"SELECT pg_terminate_backend({writer_pid})")
        assert "permission denied" in message or "must be a" in message, message
        assert writer.exec_driver_sql("SELECT 1").scalar() == 1  # still alive
    with pg_store.engine.connect() as conn:
        role = reader_role(conn.exec_driver_sql("SELECT current_database()").scalar())
        facts = conn.execute(
            sa.text(
                "SELECT rolsuper, rolcanlogin, pg_has_role(:r, session_user, 'MEMBER'), "
                "pg_has_role(:r, 'pg_signal_backend', 'MEMBER') FROM pg_roles WHERE rolname = :r"
            ),
            {"r": role},
        ).one()
    assert tuple(facts) == (False, False, False, False)


def test_postgresql_dblink_cannot_write(pg_store, pg_cluster):
    with pg_store.engine.begin() as conn:
        try:
            conn.exec_driver_sql("CREATE EXTENSION dblink")
        except sa.exc.DBAPIError:
            pytest.fail("PostgreSQL's dblink extension is missing (Debian's postgresql package ships it)")
    target = (
        f"host={pg_cluster.socket_dir} port={pg_cluster.port} user={pg_cluster.user} dbname=console_faults"
    )
    message = _refused_by_engine(pg_store, f"SELECT dblink_exec('{target}', 'DELETE FROM runs')")
    assert "password is required" in message or "permission denied" in message, message
    assert "leak" not in pg_store.read_sql("SELECT tablename FROM pg_tables")["tablename"].tolist()


def test_init_by_an_owner_who_may_not_create_roles(pg_cluster):
    """init says what an administrator runs; once run, queries work as the reader."""
    admin = psycopg.connect(
        host=str(pg_cluster.socket_dir),
        port=pg_cluster.port,
        user=pg_cluster.user,
        dbname="postgres",
        autocommit=True,
    )
    with admin:
        admin.execute("DROP DATABASE IF EXISTS owned_store")
        for role in ("owned_store_reader", "plain_owner"):
            admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute("CREATE ROLE plain_owner LOGIN NOSUPERUSER NOCREATEROLE")
        admin.execute("CREATE DATABASE owned_store OWNER plain_owner TEMPLATE template0")
        url = f"postgresql+psycopg://plain_owner@/owned_store?host={pg_cluster.socket_dir}&port={pg_cluster.port}"
        result = runner.invoke(app, ["init", "--db", url])
        assert result.exit_code == 0, result.output
        line = result.output.strip().splitlines()[-1]
        assert "an administrator runs: " in line, line
        admin_sql = line.split("an administrator runs: ")[1].split(" then ")[0]
        result = runner.invoke(app, ["query", "SELECT 1 AS one", "--db", url])
        assert result.exit_code == 1 and "has no read-only role owned_store_reader" in result.stderr
        admin.execute(admin_sql)
        result = runner.invoke(app, ["init", "--db", url])
        assert result.exit_code == 0 and "read-only role owned_store_reader" in result.output
        result = runner.invoke(
            app, ["query", "SELECT current_user AS who, count(*) AS n FROM runs", "-f", "csv", "--db", url]
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines() == ["who,n", "owned_store_reader,0"]


# -- Ctrl-C and streaming, as a user runs them -------------------------------------------------
def _stemstore(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stemstore.cli.app", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


SLEEPING = "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'"


def _wait_for_query(db_url: str, backend: str) -> None:
    """Until the query runs: PostgreSQL shows it in pg_stat_activity; DuckDB gets the time to
    start on a busy machine (the query is endless, so waiting long costs only time)."""
    if backend == "duckdb":
        time.sleep(15)
        return
    with Store.open(db_url) as store:
        for _ in range(100):
            running = store.read_sql(SLEEPING)
            if not running.empty:
                return
            time.sleep(0.1)
    raise AssertionError("the query never started")


def test_ctrl_c_stops_an_endless_query(cli_store, db_url):
    backend = cli_store.dialect
    before = stored_counts(cli_store)
    cli_store.engine.dispose()
    process = _stemstore("query", ENDLESS[backend], "--timeout", "0", "--db", db_url)
    _wait_for_query(db_url, backend)
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, err = process.communicate(timeout=30)
    assert time.monotonic() - started < 5
    assert process.returncode == 130 and err.strip() == "interrupted: the query was stopped", err
    assert stored_counts(cli_store) == before
    if backend == "postgresql":  # the server stopped it too
        running = cli_store.read_sql(SLEEPING)
        assert running.empty


def test_csv_streams_rows_as_they_come(cli_store, db_url):
    """An endless result's first rows are written long before it could end; memory stays flat."""
    cli_store.engine.dispose()
    process = _stemstore("query", ENDLESS_ROWS, "-f", "csv", "--limit", "0", "--timeout", "0", "--db", db_url)
    assert process.stdout.readline().strip() == "n"
    assert all(process.stdout.readline().strip().isdigit() for _ in range(3))
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert process.returncode == 130


def test_a_huge_result_shows_its_first_rows(store):
    started = time.monotonic()
    ten_to_the_8 = ENDLESS_ROWS.replace("100000", "10000")
    frame = query(store, ten_to_the_8, limit=5)
    assert len(frame) == 5 and frame.attrs["truncated"]
    assert time.monotonic() - started < 10


def test_library_refusals_are_stemstore_errors(store):
    with pytest.raises(StemstoreError, match="cannot parse the query"):
        query(store, "SELECT 'abc")
    with pytest.raises(StemstoreError, match="exactly one statement"):
        query(store, "SELECT 1; SELECT 2")
