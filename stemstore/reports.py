"""Reports, read-only SQL and status: what the store holds, for people to read.

A report is a view of ``queries/`` filtered by ``group_name`` and ``instrument`` when the view
has those columns. ``query`` runs any read the user writes, and nothing else. ``status`` is the
corpus at a glance and the work left for each stage.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import queue
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import sqlglot
from sqlglot import exp

from stemstore.errors import StemstoreError
from stemstore.store.connection import QueryConnection, Store
from stemstore.store.views import report_order, view_names
from stemstore.enums import TrackKind

#: Statement types that only read. Anything else, anywhere in the tree, is refused.
_WRITES = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Command,
    exp.Copy,
    exp.Set,
    exp.TruncateTable,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Use,
    exp.Pragma,
    exp.Attach,
    exp.Detach,
    exp.Grant,
)


#: Functions a query may not call, refused by name before the database sees the statement:
#: they reach the server's files, the network, other sessions or the session's own role.
#: The database refuses them too (a read-only role; DuckDB without external access).
_REFUSED_FUNCTIONS = re.compile(
    r"set_config|pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile\w*"
    r"|pg_read_file|pg_read_binary_file|pg_ls_\w+|pg_stat_file|pg_file_\w+|lo_\w+|dblink\w*"
    r"|read_\w+|glob|sniff_csv|parquet_\w+|\w+_scan|query_table",
    re.IGNORECASE,
)

#: Rows a query shows unless told otherwise (``limit=0``: all of them).
DEFAULT_LIMIT = 1000
#: Seconds a query may run unless told otherwise (0 or None: no limit).
DEFAULT_TIMEOUT = 30.0


class QueryInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a query; the database was told to stop it too."""

    def __str__(self) -> str:
        return "the query was stopped"


def check_read_only(sql: str, dialect: str) -> exp.Expression:
    """Refuse anything but one reading statement, by parsing it (not by matching strings).

    Returns the parsed statement."""
    # sqlglot logs a warning for syntax it does not know; the refusal below says it in one line
    parser_log = logging.getLogger("sqlglot")
    level = parser_log.level
    parser_log.setLevel(logging.ERROR)
    try:
        statements = [
            s for s in sqlglot.parse(sql, read="postgres" if dialect == "postgresql" else dialect) if s
        ]
    except sqlglot.errors.TokenError as exc:
        raise StemstoreError(
            f"cannot parse the query: {_first_line(exc)} (a string or quoted name left open?)"
        ) from exc
    except sqlglot.errors.SqlglotError as exc:
        raise StemstoreError(f"cannot parse the query: {_first_line(exc)}") from exc
    finally:
        parser_log.setLevel(level)
    if len(statements) != 1:
        raise StemstoreError(f"give exactly one statement (found {len(statements)})")
    statement = statements[0]
    if not isinstance(statement, (exp.Query, exp.Describe, exp.Show)):
        raise StemstoreError(f"refused: query only reads, and this is a {statement.key.upper()} statement")
    for node in statement.walk():
        if isinstance(node, _WRITES):
            raise StemstoreError(f"refused: query only reads, and this statement contains {node.key.upper()}")
        if isinstance(node, exp.Func):
            name = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
            if _REFUSED_FUNCTIONS.fullmatch(name or ""):
                raise StemstoreError(
                    f"refused: query only reads the store, and {name.lower()}() reaches outside it"
                )
    return statement


@dataclass(eq=False)
class QueryStream:
    """The rows of a running query, in batches (lists of tuples), as the database gives them.

    ``columns`` are the result's column names; ``truncated`` says rows were left out because
    of the limit (known once the batches are read)."""

    columns: list[str]
    batches: Iterator[list[tuple]]
    limit: int
    truncated: bool = False

    def __iter__(self) -> Iterator[list[tuple]]:
        return self.batches

    def frames(self) -> Iterator[pd.DataFrame]:
        for batch in self:
            yield pd.DataFrame(batch, columns=self.columns)


@contextmanager
def stream_query(
    store: Store,
    sql: str,
    *,
    limit: int = DEFAULT_LIMIT,
    timeout: float | None = DEFAULT_TIMEOUT,
    batch_rows: int = 1000,
) -> Iterator[QueryStream]:
    """Run one read-only statement and stream its rows: at most ``limit`` (0: all), fetched
    ``batch_rows`` at a time, so memory stays bounded whatever the result's size.

    The statement is parsed and refused unless it only reads (:func:`check_read_only`), then
    run on :meth:`Store.query_connection`, where the database itself refuses anything else.
    The database works in a thread of its own, so Ctrl-C stops it at once (it raises
    :class:`QueryInterrupted`) and ``timeout`` seconds stop it with a one-line error.
    """
    statement = check_read_only(sql, store.dialect)
    with store.query_connection(timeout) as connection:
        # a SELECT streams through a server-side cursor; SHOW and DESCRIBE give a few rows
        worker = _QueryWorker(
            connection, sql, batch_rows, cursor=isinstance(statement, exp.Query), timeout=timeout
        )
        worker.start()
        try:
            columns = worker.next("columns")
            stream = QueryStream(columns, iter(()), limit)
            stream.batches = _limited(worker, stream)
            yield stream
        except KeyboardInterrupt:
            worker.stop()
            raise QueryInterrupted() from None
        finally:
            worker.stop()


def query(
    store: Store, sql: str, *, limit: int = DEFAULT_LIMIT, timeout: float | None = DEFAULT_TIMEOUT
) -> pd.DataFrame:
    """Run one read-only statement (see :func:`stream_query`); its first ``limit`` rows
    (0: all) as a DataFrame, with ``attrs["truncated"]`` saying whether rows were left out."""
    with stream_query(store, sql, limit=limit, timeout=timeout) as stream:
        rows = [row for batch in stream for row in batch]
        frame = pd.DataFrame(rows, columns=stream.columns)
        frame.attrs["truncated"] = stream.truncated
    return frame


def _limited(worker: _QueryWorker, stream: QueryStream) -> Iterator[list[tuple]]:
    left = stream.limit or None
    while (batch := worker.next("rows")) is not None:
        if left is not None:
            if len(batch) >= left:
                # one row past the limit says whether anything was left out
                stream.truncated = len(batch) > left or worker.next("rows") is not None
                yield batch[:left]
                return
            left -= len(batch)
        yield batch


class _QueryWorker:
    """Runs a statement in a thread and hands its rows over a short queue (memory stays bounded).

    The caller's thread stays free for Ctrl-C while the database works."""

    def __init__(
        self, connection: QueryConnection, sql: str, batch_rows: int, *, cursor: bool, timeout: float | None
    ) -> None:
        self.connection, self.sql, self.batch_rows, self.cursor = connection, sql, batch_rows, cursor
        self.timeout = timeout
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stemstore-query", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def next(self, kind: str):
        """The next item of ``kind`` ("columns" or "rows"; None when the rows end)."""
        while True:
            try:
                got, value = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if got == "error":
                raise self._explain(value)
            if got == "end":
                return None
            return value

    def stop(self) -> None:
        """Stop the statement if it still runs and wait for the thread."""
        if not self.thread.is_alive():
            return
        self.stopping.set()
        try:
            self.connection.interrupt()
        except Exception:  # noqa: BLE001 - the statement may have ended meanwhile
            pass
        while self.thread.is_alive():
            try:
                self.queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self.thread.join()

    def _put(self, item: tuple) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in _fetch(self.connection, self.sql, self.batch_rows, self.cursor):
                if not self._put(item):
                    return
            self._put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._put(("error", exc))

    def _explain(self, exc: BaseException) -> StemstoreError:
        text = _first_line(exc)
        if self.connection.timed_out or "statement timeout" in text:
            return StemstoreError(
                f"the query ran longer than {self.timeout:g} s and was stopped "
                "(--timeout SECONDS allows longer, 0 no limit)"
            )
        return StemstoreError(f"the database refused the query: {text}")


def _fetch(connection: QueryConnection, sql: str, batch_rows: int, server_cursor: bool) -> Iterator[tuple]:
    """("columns", names) then ("rows", batch) items of the statement's result."""
    if connection.dialect == "duckdb":
        cursor = connection.raw
        cursor.execute(sql)
        names = [d[0] for d in cursor.description or []]
    else:
        cursor = connection.raw.cursor(name="stemstore_query") if server_cursor else connection.raw.cursor()
        cursor.execute(sql)
        names = [d.name for d in cursor.description or []]
    yield "columns", names
    while batch := cursor.fetchmany(batch_rows):
        yield "rows", batch


def report_names() -> list[str]:
    return view_names()


def report(
    store: Store,
    name: str,
    *,
    groups: list[str] | None = None,
    instruments: list[str] | None = None,
    run_id: int | None = None,
) -> pd.DataFrame:
    """Rows of view ``name`` for the given groups and/or instruments (all rows if neither).

    Views of run results have a ``run_id`` column and an ``is_latest`` flag: by default a
    report shows each group's latest run, or the run ``run_id``.
    """
    if name not in report_names():
        raise StemstoreError(f"unknown report {name!r} (reports: {', '.join(report_names())})")
    frame = store.read_sql(f"SELECT * FROM {name}")
    if groups:
        for g in groups:
            store.group_instruments(g)  # an unknown group is an error, not an empty table
        if "group_name" not in frame.columns:
            raise StemstoreError(f"report {name} has no groups to choose from")
        frame = frame[frame["group_name"].isin(groups)]
    if instruments:
        if "instrument" not in frame.columns:
            raise StemstoreError(f"report {name} has no instruments to choose from")
        frame = frame[frame["instrument"].isin(instruments)]
    if "run_id" in frame.columns:
        if run_id is not None:
            frame = frame[frame["run_id"] == run_id]
            if frame.empty:
                raise StemstoreError(f"report {name}: no rows for run {run_id}")
        elif "is_latest" in frame.columns:
            frame = frame[frame["is_latest"].astype(bool)]
        frame = frame.drop(columns=[c for c in ("is_latest",) if c in frame.columns])
    order = [c for c in report_order(name) if c in frame.columns]
    if order:
        frame = frame.sort_values(order, na_position="last", kind="stable")
    return frame.reset_index(drop=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- status: the corpus and the work left ------------------------------------------------------
def status(store: Store) -> dict[str, pd.DataFrame]:
    """The corpus at a glance, as DataFrames:

    * ``instruments``: the corpus_status view (per group and instrument: multitracks, stems,
      raws, audio present/missing/unreadable, stale tracks, stem pairs to segment);
    * ``groups``: per group: multitracks, stem pairs, raw tracks, stem pairs to segment;
    * ``audio``: tracks by audio status (mix, stems and raws);
    * ``problems``: every missing or unreadable file with its reason;
    * ``stale``: stale tracks, segments and runs;
    * ``runs``: runs recorded ``running``, and whether a live process still holds each
      (see :func:`unfinished_runs`);
    * ``pending``: work left: stem pairs to segment (instruments of a group), segments to
      extract, outdated segments to re-extract (values of an older extractor version), stale
      segments to redo.
    """
    corpus = """FROM tracks t JOIN multitracks m ON m.id = t.multitrack_id
                JOIN corpora c ON c.id = m.corpus_id
                WHERE c.format <> 'import' AND t.code NOT LIKE 'import/%'"""
    out = {
        "instruments": store.read_sql(
            "SELECT * FROM corpus_status ORDER BY group_name NULLS LAST, instrument"
        ),
        "audio": store.read_sql(
            f"SELECT t.kind, t.audio_status, COUNT(*) AS tracks {corpus} "
            "GROUP BY t.kind, t.audio_status ORDER BY t.kind, t.audio_status"
        ),
        "problems": store.read_sql(
            f"""SELECT m.name AS multitrack, t.kind, t.code, t.path, t.audio_status, t.status_reason
                {corpus} AND t.audio_status <> 'present' ORDER BY t.audio_status DESC, m.name, t.kind, t.code"""
        ),
        "stale": store.read_sql(
            """SELECT 'tracks' AS item, COUNT(*) AS stale FROM tracks WHERE stale
               UNION ALL SELECT 'segments', COUNT(*) FROM segments WHERE stale
               UNION ALL SELECT 'runs', COUNT(*) FROM runs WHERE stale"""
        ),
    }
    # per group: distinct multitracks and (multitrack, instrument) stem pairs, which do not add
    # up over the per-instrument rows
    frame = out["instruments"]
    for col in frame.columns:
        if col not in ("group_name", "instrument"):
            frame[col] = frame[col].fillna(0).astype("int64")
    members = store.read_sql(
        """SELECT g.group_name, t.kind, t.multitrack_id, t.instrument_id
           FROM tracks t JOIN multitracks m ON m.id = t.multitrack_id
           JOIN corpora c ON c.id = m.corpus_id
           JOIN group_labels g ON g.instrument_id = t.instrument_id
           WHERE c.format <> 'import' AND t.code NOT LIKE 'import/%' AND t.kind IN ('stem', 'raw')"""
    )
    stems = members[members["kind"] == TrackKind.STEM].drop_duplicates(
        ["group_name", "multitrack_id", "instrument_id"]
    )
    groups = pd.DataFrame(
        {
            "multitracks": members.groupby("group_name")["multitrack_id"].nunique(),
            "stems": stems.groupby("group_name").size(),
            "raw_tracks": members[members["kind"] == TrackKind.RAW].groupby("group_name").size(),
            "to_segment": out["instruments"].groupby("group_name")["to_segment"].sum(),
        }
    )
    out["groups"] = groups.fillna(0).astype("int64").rename_axis("group_name").reset_index()
    to_segment = out["instruments"].dropna(subset=["group_name"]).drop_duplicates("instrument")
    segments = store.read_sql(
        """SELECT SUM(CASE WHEN status = 'pending' AND NOT stale THEN 1 ELSE 0 END) AS to_extract,
                  SUM(CASE WHEN stale THEN 1 ELSE 0 END) AS stale FROM segments"""
    ).fillna(0)
    # imported here so that reports and queries do not load Essentia
    from stemstore.features.extraction import count_outdated

    out["pending"] = pd.DataFrame(
        {
            "work": [
                "stem pairs to segment (instruments of a group)",
                "segments to extract",
                "outdated segments to re-extract (older extractor version)",
                "stale segments to redo",
            ],
            "count": [
                int(to_segment["to_segment"].sum()),
                int(segments["to_extract"][0]),
                count_outdated(store),
                int(segments["stale"][0]),
            ],
        }
    )
    out["stale"]["stale"] = out["stale"]["stale"].astype("int64")
    out["runs"] = unfinished_runs(store)
    return out


def unfinished_runs(store: Store) -> pd.DataFrame:
    """Runs recorded ``running``: id, kind, group, started_at and ``state``, which says whether
    a live process still holds the run. A run whose process (pid and host, recorded when it
    started) is gone from this host was interrupted (kill -9, a crash, a power cut); a run of
    another host cannot be checked from here."""
    runs = store.read_sql(
        "SELECT id, kind, group_name, started_at, params FROM runs WHERE status = 'running' ORDER BY id"
    )
    states = []
    for params in runs["params"]:
        params = json.loads(params) if isinstance(params, str) else (params or {})
        process = params.get("process") or {}
        pid, host = process.get("pid"), process.get("host")
        if pid is None:
            states.append("unknown (no process recorded)")
        elif host != platform.node():
            states.append(f"unknown (running on host {host}, pid {pid})")
        elif _alive(int(pid)):
            states.append(f"running (pid {pid})")
        else:
            states.append(f"interrupted (pid {pid} is gone)")
    return runs.drop(columns="params").assign(state=states)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a process of another user holds the pid
    return True
