"""Reports, read-only SQL and status: what the store holds, for people to read.

A report is a view of ``queries/`` filtered by ``group_name`` and ``instrument`` when the view
has those columns. ``query`` runs any read the user writes, and nothing else. ``status`` is the
corpus at a glance and the work left for each stage.
"""

from __future__ import annotations

import json
import os
import platform

import sqlalchemy as sa
import pandas as pd
import sqlglot
from sqlglot import exp

from stemstore.errors import StemstoreError
from stemstore.store.connection import Store
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


def check_read_only(sql: str, dialect: str) -> None:
    """Refuse anything but one reading statement, by parsing it (not by matching strings)."""
    try:
        statements = [
            s for s in sqlglot.parse(sql, read="postgres" if dialect == "postgresql" else dialect) if s
        ]
    except sqlglot.errors.ParseError as exc:
        first = str(exc).splitlines()[0]
        raise StemstoreError(f"cannot parse the query: {first}") from exc
    if len(statements) != 1:
        raise StemstoreError(f"give exactly one statement (found {len(statements)})")
    statement = statements[0]
    if not isinstance(statement, (exp.Query, exp.Describe, exp.Show)):
        raise StemstoreError(f"refused: query only reads, and this is a {statement.key.upper()} statement")
    for node in statement.walk():
        if isinstance(node, _WRITES):
            raise StemstoreError(f"refused: query only reads, and this statement contains {node.key.upper()}")


def query(store: Store, sql: str) -> pd.DataFrame:
    """Run one read-only statement. Parsed first; then run in a read-only transaction on
    PostgreSQL (DuckDB: the CLI also opens the file read-only)."""
    check_read_only(sql, store.dialect)
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        try:
            result = conn.exec_driver_sql(sql)
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        except sa.exc.DBAPIError as exc:
            raise StemstoreError(f"the database refused the query: {_first_line(exc.orig)}") from exc
        finally:
            conn.rollback()
    return frame


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
