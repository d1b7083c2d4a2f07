"""Opening a store, migrating it, and the bulk paths every pipeline stage writes through.

A store is any SQLAlchemy URL: by default the DuckDB file ``stemstore.duckdb`` in the working
directory, or a PostgreSQL database for shared and larger stores. Both get the same schema
from the same Alembic migrations.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata, resources
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.orm import Session

from stemstore.enums import RunStatus
from stemstore.store import catalog
from stemstore.errors import StemstoreError
from stemstore.store.schema import (
    Base,
    Feature,
    FeatureCatalog,
    GroupMember,
    Instrument,
    InstrumentGroup,
    Run,
    SCHEMA_REVISION,
    utcnow,
)

DEFAULT_DB = "stemstore.duckdb"
ENV_DB = "STEMSTORE_DB"

#: DuckDB settings of a store opened read-only: no files, no network, no extensions (so no
#: ``read_csv('/etc/passwd')``, ATTACH, INSTALL or LOAD), and no statement may change that.
DUCKDB_READ_ONLY_CONFIG = {"enable_external_access": False, "lock_configuration": True}

#: The databases a store can live in, and what their URLs look like.
BACKENDS = {"duckdb": "duckdb:///path/to/store.duckdb", "postgresql": "postgresql+psycopg://user@host/db"}

#: The reference study's instrument groups (docs/method.md, section 1).
DEFAULT_GROUPS: dict[str, list[str]] = {
    "bass": ["electric bass", "synth bass"],
    "guitar": ["clean electric guitar", "acoustic guitar", "distorted electric guitar", "banjo"],
    "vocal": ["male singer", "female singer", "male rapper"],
    "keys": ["piano", "synthesizer", "tack piano", "electric piano"],
}


def resolve_url(db: str | None = None) -> str:
    """``--db`` wins, then ``$STEMSTORE_DB``, then ./stemstore.duckdb. A bare path is DuckDB."""
    db = db or os.environ.get(ENV_DB) or DEFAULT_DB
    if "://" in db:
        return db
    return f"duckdb:///{Path(db).expanduser().resolve()}"


def software_versions() -> dict[str, str]:
    """Versions of everything a result depends on, recorded on every run."""
    versions = {"python": platform.python_version()}
    for dist in (
        "stemstore",
        "essentia",
        "numpy",
        "scipy",
        "pandas",
        "scikit-learn",
        "sqlalchemy",
        "duckdb",
        "psycopg",
        "pedalboard",
        "skops",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


# Alembic is imported only where migrations are read or run: opening a store at the current
# schema never needs it (checked against schema.SCHEMA_REVISION), which saves every command
# the ~0.3 s that importing Alembic costs.
def _migrations_config(connection: sa.Connection | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("stemstore.migrations")))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _migration_scripts():
    """The shipped migrations (an Alembic ``ScriptDirectory``), read once per process."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_migrations_config())


def head_revisions() -> set[str]:
    """The newest migration of each branch (normally one)."""
    return set(_migration_scripts().get_heads())


def known_revisions() -> set[str]:
    """Every revision the shipped migrations define."""
    return {rev.revision for rev in _migration_scripts().walk_revisions()}


class Store:
    """An open store. Create with :meth:`Store.open`; use as a context manager or call close()."""

    def __init__(self, engine: sa.Engine, url: str, *, read_only: bool = False) -> None:
        self.engine = engine
        self.url = url
        self.read_only = read_only

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        db: str | None = None,
        *,
        create: bool = False,
        check_schema: bool = True,
        read_only: bool = False,
        writer: bool = False,
        on_wait: Callable[[str], None] | None = None,
    ) -> Store:
        """Open the store at ``db`` (URL or DuckDB path; see :func:`resolve_url`).

        ``create`` allows a new DuckDB file; otherwise a missing file is an error, so that a
        typo never silently makes an empty store. ``check_schema`` refuses a store whose
        schema is behind the code (run ``stemstore init`` to upgrade it). ``read_only`` opens
        a DuckDB file read-only and without access to anything outside it
        (:data:`DUCKDB_READ_ONLY_CONFIG`), so the database itself refuses writes, file reads,
        ATTACH, INSTALL and LOAD. A malformed URL, an unknown or missing driver and an
        unreachable server are one-line errors. ``writer`` serialises writers of a PostgreSQL
        store: it takes the store's advisory lock (:meth:`take_writer_lock`), calling
        ``on_wait`` with a line to show while another writer holds it.
        """
        url = resolve_url(db)
        sa_url = parse_url(url)
        backend = sa_url.get_backend_name()
        if backend == "duckdb" and sa_url.database not in (None, "", ":memory:"):
            path = Path(sa_url.database)
            if not path.parent.is_dir():
                raise StemstoreError(f"the store's directory does not exist: {path.parent}")
            if not create and not path.exists():
                raise StemstoreError(f"no store at {path}: run 'stemstore init' to create one")
        shown = sa_url.render_as_string(hide_password=True)  # messages never show a password
        connect_args = {}
        if read_only and backend == "duckdb":
            connect_args = {"read_only": True, "config": dict(DUCKDB_READ_ONLY_CONFIG)}
        try:
            engine = sa.create_engine(sa_url, connect_args=connect_args)
        except ModuleNotFoundError as exc:
            raise StemstoreError(
                f"cannot use database {shown}: its driver {exc.name!r} is not installed "
                f"(a PostgreSQL store's URL starts postgresql+psycopg://)"
            ) from exc
        except Exception as exc:  # unknown driver names and the like
            raise StemstoreError(f"cannot use database {shown}: {_first_line(exc)}") from exc
        store = cls(engine, url, read_only=read_only)
        try:
            with engine.connect():
                pass
        except Exception as exc:
            engine.dispose()
            raise StemstoreError(_explain_connect_error(shown, exc)) from exc
        try:
            if writer and store.dialect == "postgresql":
                store.take_writer_lock(on_wait)
            if check_schema:
                store.check_schema()
        except BaseException:
            store.close()  # releases the writer lock: a refused open must not keep it
            raise
        return store

    def take_writer_lock(self, on_wait: Callable[[str], None] | None = None) -> None:
        """Hold the store's PostgreSQL session advisory lock until :meth:`close`.

        Two writers at once would interleave runs and clash on unique keys; the second
        waits instead. The lock lives on a connection of its own, so it ends with the
        process even if the process dies.
        """
        key = writer_lock_key(self.engine.url.database or "")
        conn = self.engine.connect()
        got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        if not got:
            if on_wait is not None:
                on_wait(f"waiting for another writer of {self.label} to finish")
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        conn.commit()
        self._writer_lock = (conn, key)

    @property
    def label(self) -> str:
        """The store's URL as it may be shown: without a password."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        lock = getattr(self, "_writer_lock", None)
        if lock is not None:
            conn, key = lock
            self._writer_lock = None
            try:  # a pooled connection keeps session locks: release before returning it
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.close()
            except sa.exc.DBAPIError:
                conn.invalidate()  # the server is gone, and the lock with the session
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name  # 'duckdb' | 'postgresql'

    # -- schema ----------------------------------------------------------------------------
    def schema_revisions(self) -> set[str]:
        """The revisions in the store's ``alembic_version`` table (none for an empty database)."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return set()
            return set(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())

    def schema_revision(self) -> str | None:
        """The store's schema revision(s), comma-separated; None for an empty database."""
        return ",".join(sorted(self.schema_revisions())) or None

    def check_foreign_tables(self) -> None:
        """Refuse a database that holds another application's tables under our names, or
        an ``alembic_version`` whose revision is not one of ours."""
        existing = set(sa.inspect(self.engine).get_table_names())
        if "alembic_version" in existing:
            current = self.schema_revisions()
            unknown = sorted(current - known_revisions())
            if unknown:
                raise StemstoreError(
                    f"{self.label} belongs to another application: its alembic_version is at "
                    f"revision {','.join(unknown)}, not a stemstore revision; use a separate database"
                )
            return
        clashing = sorted(existing & set(Base.metadata.tables))
        if clashing:
            raise StemstoreError(
                f"{self.label} already holds tables that are not a stemstore's: "
                f"{', '.join(clashing)}; use a separate database for the store"
            )

    def check_schema(self) -> None:
        current = self.schema_revisions()
        if current == {SCHEMA_REVISION}:
            return  # a store at this code's schema: nothing more to read (every open comes here)
        self.check_foreign_tables()
        heads = head_revisions()
        if not current:
            raise StemstoreError(f"{self.label} is not a stemstore store yet: run 'stemstore init'")
        if current != heads:
            raise StemstoreError(
                f"the store's schema is at revision {self.schema_revision()}, this stemstore needs "
                f"{','.join(sorted(heads))}: run 'stemstore init' to upgrade it"
            )

    def upgrade(self, revision: str = "heads") -> None:
        from alembic import command

        with self.engine.begin() as conn:
            command.upgrade(_migrations_config(conn), revision)

    def downgrade(self, revision: str) -> None:
        from alembic import command

        with self.engine.begin() as conn:
            command.downgrade(_migrations_config(conn), revision)

    def init(self) -> dict[str, int]:
        """Upgrade to the head schema, load the package's catalog and the default groups.

        Safe to run again: it only adds what is missing.
        """
        self.check_foreign_tables()
        self.upgrade()
        reader = self.ensure_reader_role()
        added_features = self._load_catalog()
        added_groups = 0
        with self.session() as s:
            existing = set(s.scalars(sa.select(InstrumentGroup.name)))
            for name, members in DEFAULT_GROUPS.items():
                if name not in existing:
                    self._set_group(
                        s, name, members, "default group of the study (docs/method.md, section 1)"
                    )
                    added_groups += 1
        return {"features": added_features, "groups": added_groups, "reader": reader}

    # -- reading on behalf of a user: stemstore query ------------------------------------
    def ensure_reader_role(self) -> str | None:
        """PostgreSQL: make the role ``query`` switches to, ``<database>_reader``, and grant it
        SELECT on the store's tables and views (now and, by default privileges, later ones).

        The role is a different role from the store's owner and no member of it, so a query
        can neither write nor signal the owner's sessions (``pg_terminate_backend`` works on
        sessions of one's own role). Returns what ``init`` tells the user; when the owner may
        not create roles, the SQL an administrator runs. None on DuckDB.
        """
        if self.dialect != "postgresql":
            return None
        with self.engine.connect() as conn:
            database, owner, schema = conn.execute(
                sa.text("SELECT current_database(), current_user, current_schema()")
            ).one()
            owner_is_super = conn.execute(
                sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            ).scalar()
        reader = reader_role(database)
        steps = []
        if not self._role_exists(reader):
            steps.append(f"CREATE ROLE {_ident(reader)} {READER_ROLE_OPTIONS}")
        if not owner_is_super and not self._is_member(owner, reader):
            steps.append(f"GRANT {_ident(reader)} TO {_ident(owner)}")
        try:
            with self.engine.begin() as conn:
                for step in steps:
                    conn.exec_driver_sql(step)
        except sa.exc.DBAPIError as exc:
            return (
                f"no read-only role for queries ({_first_line(exc)}); an administrator runs: "
                f"{admin_reader_sql(reader, owner)} then 'stemstore init' again"
            )
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {_ident(reader)}")
            conn.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA {_ident(schema)} TO {_ident(reader)}")
            conn.exec_driver_sql(
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {_ident(schema)} GRANT SELECT ON TABLES TO {_ident(reader)}"
            )
        return f"queries run as the read-only role {reader}"

    def _is_member(self, role: str, of: str) -> bool:
        if not self._role_exists(of):
            return False
        with self.engine.connect() as conn:
            return bool(
                conn.execute(sa.text("SELECT pg_has_role(:a, :b, 'MEMBER')"), {"a": role, "b": of}).scalar()
            )

    def _role_exists(self, role: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
            return found.first() is not None

    @contextmanager
    def query_connection(self, timeout: float | None = None) -> Iterator[QueryConnection]:
        """A DB-API connection for one user-written read, on which the database itself refuses
        anything else, and a way to stop it (:meth:`QueryConnection.interrupt`).

        DuckDB: the file opened read-only without external access (:data:`DUCKDB_READ_ONLY_CONFIG`).
        PostgreSQL: a READ ONLY transaction with ``statement_timeout``, switched to the store's
        read-only role (:meth:`ensure_reader_role`); a missing or unsafe role is refused.
        ``timeout`` (seconds; None or 0 for none) stops the statement; on DuckDB a timer
        interrupts it. Everything is rolled back at the end.
        """
        if self.dialect == "duckdb" and not self.read_only:
            # DuckDB opens a file once per process with one configuration: let go of this
            # store's own connections and read through a read-only store of the same file
            self.engine.dispose()
            try:
                reader = Store.open(self.url, read_only=True, check_schema=False)
            except StemstoreError as exc:
                raise StemstoreError(
                    f"cannot open the store read-only for the query while this process writes to it ({exc})"
                ) from exc
            with reader, reader.query_connection(timeout) as connection:
                yield connection
            return
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            try:
                if self.dialect == "postgresql":
                    self._enter_reader_role(conn, timeout)
                    yield QueryConnection(raw, self.dialect, raw.cancel_safe)
                else:
                    connection = QueryConnection(raw, self.dialect, raw.interrupt)
                    timer = None
                    if timeout:
                        timer = threading.Timer(timeout, connection.expire)
                        timer.daemon = True
                        timer.start()
                    try:
                        yield connection
                    finally:
                        if timer is not None:
                            timer.cancel()
            finally:
                conn.rollback()

    def _enter_reader_role(self, conn: sa.Connection, timeout: float | None) -> None:
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int((timeout or 0) * 1000)}")
        database, session_user = conn.execute(sa.text("SELECT current_database(), session_user")).one()
        reader = reader_role(database)
        role = conn.execute(
            sa.text(
                "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication "
                "FROM pg_roles WHERE rolname = :r"
            ),
            {"r": reader},
        ).first()
        if role is None:
            raise StemstoreError(
                f"the store has no read-only role {reader} for queries: run 'stemstore init' as the "
                f"store's owner, or have an administrator run: {admin_reader_sql(reader, session_user)}"
            )
        powers = [
            name
            for (name,) in conn.execute(
                sa.text(
                    "SELECT rolname FROM pg_roles WHERE rolname = ANY(:names) AND rolname <> :r "
                    "AND pg_has_role(:r, oid, 'MEMBER') ORDER BY rolname"
                ),
                {"names": [session_user, *UNSAFE_READER_MEMBERSHIPS], "r": reader},
            )
        ]
        if role[0] or powers:
            what = "has administrative attributes" if role[0] else f"is a member of {', '.join(powers)}"
            raise StemstoreError(
                f"refused: the read-only role {reader} {what}; an administrator recreates it: "
                f"DROP ROLE {_ident(reader)}; {admin_reader_sql(reader, session_user)}"
            )
        try:
            with conn.begin_nested():
                conn.exec_driver_sql(f"SET LOCAL ROLE {_ident(reader)}")
        except sa.exc.DBAPIError as exc:
            raise StemstoreError(
                f"cannot switch to the read-only role {reader} ({_first_line(exc)}): have an "
                f"administrator run: GRANT {_ident(reader)} TO {_ident(session_user)};"
            ) from exc

    def _load_catalog(self) -> int:
        version = catalog.catalog_version()
        with self.session() as s:
            if s.get(FeatureCatalog, version) is not None:
                return 0
            s.add(FeatureCatalog(version=version, n_features=len(catalog.feature_names())))
            s.flush()
            df = catalog.load_catalog()
            s.execute(
                sa.insert(Feature),
                [
                    {
                        "catalog_version": version,
                        "position": int(r.position),
                        "name": r.name,
                        "descriptor": r.descriptor,
                        "statistic": r.statistic,
                        "feature_index": None if pd.isna(r.index) else int(r.index),
                        "scope": r.scope,
                        "frame_size": None if pd.isna(r.frame_size) else int(r.frame_size),
                        "hop_size": None if pd.isna(r.hop_size) else int(r.hop_size),
                        "computed_by": r.computed_by,
                    }
                    for r in df.itertuples(index=False)
                ],
            )
            return len(df)

    # -- sessions and plain SQL -----------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        with Session(self.engine) as s, s.begin():
            yield s

    def read_sql(self, sql: str | sa.sql.Select, params: dict | None = None) -> pd.DataFrame:
        with self.engine.connect() as conn:
            result = conn.execute(sa.text(sql) if isinstance(sql, str) else sql, params or {})
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))

    # -- the catalog -----------------------------------------------------------------------
    @cached_property
    def features(self) -> pd.DataFrame:
        """The current catalog's features: id, position, name, descriptor, statistic, ..."""
        df = self.read_sql(
            "SELECT id, position, name, descriptor, statistic, feature_index, scope, frame_size, "
            "hop_size, computed_by FROM features WHERE catalog_version = :v ORDER BY position",
            {"v": catalog.catalog_version()},
        )
        if df.empty:
            raise StemstoreError("the store has no feature catalog: run 'stemstore init'")
        return df

    def feature_ids(self, names: Iterable[str]) -> np.ndarray:
        """Feature ids for names, in the given order; unknown names are an error listing them."""
        names = list(names)
        lookup = dict(zip(self.features["name"], self.features["id"]))
        unknown = [n for n in names if n not in lookup]
        if unknown:
            shown = ", ".join(unknown[:10]) + (f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else "")
            raise StemstoreError(f"{len(unknown)} unknown feature name(s), not in the catalog: {shown}")
        return np.array([lookup[n] for n in names], dtype=np.int64)

    # -- groups ----------------------------------------------------------------------------
    def groups(self) -> pd.DataFrame:
        """Every group with its instruments (one row per group, members comma-separated)."""
        df = self.read_sql(
            "SELECT g.name AS group_name, i.name AS instrument FROM instrument_groups g "
            "LEFT JOIN group_members m ON m.group_id = g.id "
            "LEFT JOIN instruments i ON i.id = m.instrument_id ORDER BY g.name, i.name"
        )
        return (
            df.groupby("group_name", sort=True)["instrument"]
            .apply(lambda s: ", ".join(x for x in s if x))
            .reset_index(name="instruments")
        )

    def group_instruments(self, name: str) -> list[str]:
        """A group's instrument labels. The group's own name counts as a label too, so data
        imported with the group as its instrument (as the reference files are) belongs to it."""
        if self.read_sql("SELECT 1 FROM instrument_groups WHERE name = :n", {"n": name}).empty:
            known = ", ".join(self.groups()["group_name"]) or "none"
            raise StemstoreError(f"unknown group {name!r} (groups: {known})")
        df = self.read_sql("SELECT instrument FROM group_labels WHERE group_name = :n", {"n": name})
        return sorted(set(df["instrument"]) | {name})

    def set_group(self, name: str, instruments: list[str], description: str | None = None) -> None:
        if not name.strip():
            raise StemstoreError("a group needs a name")
        if not instruments:
            raise StemstoreError(f"group {name!r} needs at least one instrument")
        with self.session() as s:
            self._set_group(s, name, instruments, description)

    def delete_group(self, name: str) -> None:
        with self.session() as s:
            group = s.scalar(sa.select(InstrumentGroup).where(InstrumentGroup.name == name))
            if group is None:
                raise StemstoreError(f"unknown group {name!r}")
            s.execute(sa.delete(GroupMember).where(GroupMember.group_id == group.id))
            s.delete(group)

    @staticmethod
    def _set_group(s: Session, name: str, instruments: list[str], description: str | None) -> None:
        group = s.scalar(sa.select(InstrumentGroup).where(InstrumentGroup.name == name))
        if group is None:
            group = InstrumentGroup(name=name, description=description)
            s.add(group)
            s.flush()
        s.execute(sa.delete(GroupMember).where(GroupMember.group_id == group.id))
        for inst_id in instrument_ids(s, instruments).values():
            s.add(GroupMember(group_id=group.id, instrument_id=inst_id))

    # -- runs ------------------------------------------------------------------------------
    def start_run(
        self, kind: str, *, group: str | None = None, params: dict | None = None, seed: int | None = None
    ) -> int:
        """Record a run as running, with its parameters, seed and software versions, and the
        process that runs it (``params["process"]``: pid and host, so that a run left
        ``running`` by a killed process can be told from one still at work)."""
        with self.session() as s:
            run = Run(
                kind=kind,
                status=RunStatus.RUNNING,
                group_name=group,
                params={**(params or {}), "process": {"pid": os.getpid(), "host": platform.node()}},
                seed=seed,
                software=software_versions(),
                catalog_version=catalog.catalog_version(),
            )
            s.add(run)
            s.flush()
            return run.id

    def finish_run(
        self,
        run_id: int,
        *,
        status: str = RunStatus.DONE,
        counts: dict | None = None,
        message: str | None = None,
    ) -> None:
        with self.session() as s:
            run = s.get(Run, run_id)
            run.status, run.finished_at = status, utcnow()
            if counts is not None:
                run.counts = {**(run.counts or {}), **counts}
            if message is not None:
                run.message = message

    @contextmanager
    def run(
        self,
        kind: str,
        *,
        group: str | None = None,
        params: dict | None = None,
        seed: int | None = None,
        deferred: bool = False,
        failure_message: Callable[[BaseException], str] | None = None,
    ) -> Iterator[RunRecord]:
        """Record the work of a ``with`` block as one run::

            with store.run("extraction", params=params) as run:
                run.counts = lambda: counts(summary)  # or a dict; read when the run ends
                ...
                run.message = "3 segment(s) failed"

        The run starts as ``running`` (with ``deferred``, only when the block calls
        ``run.start()``; a run never started records nothing). When the block ends normally the
        run is finished ``done`` with its counts and message, unless the block recorded its end
        itself (``run.recorded = True``, e.g. in the transaction that wrote its results). On
        any exception, Ctrl-C included, the run is finished ``failed`` with its counts as they
        stand and ``failure_message(exc)`` (default :func:`describe_failure`) as its message,
        and the exception propagates.
        """
        record = RunRecord(self, kind, group, params, seed)
        if not deferred:
            record.start()
        try:
            yield record
        except BaseException as exc:
            if record.id is not None:
                try:
                    self.finish_run(
                        record.id,
                        status=RunStatus.FAILED,
                        counts=record.final_counts(),
                        message=(failure_message or describe_failure)(exc),
                    )
                except Exception:
                    # The database itself may be what failed (a server gone, a full disk): the
                    # first error is the one to report. The run stays `running`, which `status`
                    # shows as interrupted once this process has ended.
                    pass
            raise
        if record.id is not None and not record.recorded:
            self.finish_run(record.id, counts=record.final_counts(), message=record.message)

    def latest_run(self, kind: str, group: str, *, current_only: bool = True) -> int | None:
        """The id of the latest run of ``kind`` for ``group``, or None when there is none.

        The rule is the ``latest_runs`` view's (queries/latest_runs.sql), which the reports use
        too: a run counts when it finished ``done`` for exactly this group, and the latest is the
        one with the highest id. With ``current_only`` a stale run (one whose segments or values
        changed after it ran) does not count (the view's ``current_run_id``); without it, it
        does (``latest_run_id``, what the tables' ``is_latest`` marks).
        """
        column = "current_run_id" if current_only else "latest_run_id"
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.text(f"SELECT {column} FROM latest_runs WHERE kind = :kind AND group_name = :group"),
                {"kind": kind, "group": group},
            ).scalar()
        return None if found is None else int(found)

    # -- bulk paths ------------------------------------------------------------------------
    def bulk_insert(self, conn: sa.Connection, table: str, frame: pd.DataFrame) -> None:
        """Insert a DataFrame in one statement: an Arrow scan on DuckDB, COPY on PostgreSQL
        (binary, built with numpy, when every column is numeric). Runs inside the caller's
        transaction ``conn``; columns left out get their defaults (ids from sequences).

        In a float64 column NaN is a value (feature values may be NaN); a missing value is
        None or pd.NA, stored as NULL."""
        if frame.empty:
            return
        columns = ", ".join(frame.columns)
        raw = conn.connection.driver_connection
        if self.dialect == "duckdb":
            raw.register("_stemstore_bulk", pa.table({c: _arrow_column(frame[c]) for c in frame.columns}))
            try:
                raw.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _stemstore_bulk")
            finally:
                raw.unregister("_stemstore_bulk")
        elif (binary_types := _pg_binary_types(table, frame)) is not None:
            with raw.cursor().copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(_pg_binary_copy(frame, binary_types))
        else:
            cells = [
                frame[c].tolist()
                if frame[c].dtype.kind == "f"
                else frame[c].astype(object).where(frame[c].notna(), None).tolist()
                for c in frame.columns
            ]
            with raw.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in zip(*cells):
                    copy.write_row(row)

    def read_long_values(
        self, conn: sa.Connection, segment_sql: str, params: dict, feature_ids: np.ndarray | None = None
    ) -> pd.DataFrame:
        """(segment_id, feature_id, value) of the segments ``segment_sql`` selects, fast.

        ``segment_sql`` is a SELECT of segment ids; it is inlined with its parameters bound.
        """
        where = f"segment_id IN ({segment_sql})"
        if feature_ids is not None:
            where += " AND feature_id IN (" + ",".join(str(int(i)) for i in feature_ids) + ")"
        sql = f"SELECT segment_id, feature_id, value FROM feature_values WHERE {where}"
        compiled = str(
            sa.text(sql)
            .bindparams(**params)
            .compile(dialect=self.engine.dialect, compile_kwargs={"literal_binds": True})
        )
        raw = conn.connection.driver_connection
        if self.dialect == "duckdb":
            return raw.execute(compiled).df()
        buffer = bytearray()
        with raw.cursor().copy(f"COPY ({compiled}) TO STDOUT (FORMAT BINARY)") as copy:
            for chunk in copy:
                buffer += chunk
        return _parse_pg_binary_copy(
            bytes(buffer), ["segment_id", "feature_id", "value"], [">i8", ">i8", ">f8"]
        )


def writer_lock_key(database: str) -> int:
    """The advisory-lock key of a PostgreSQL store: a signed 64-bit number derived from
    the database's name, so that stores in other databases of a server never wait on it."""
    digest = hashlib.sha256(f"stemstore writer {database}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def describe_failure(exc: BaseException) -> str:
    """What a failed run records about its error: ``interrupted`` for Ctrl-C, else
    :func:`describe_error`."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return describe_error(exc)


def describe_error(exc: BaseException) -> str:
    """``Type: message``, at most 500 characters (Ctrl-C gives ``KeyboardInterrupt: ``)."""
    return f"{type(exc).__name__}: {exc}"[:500]


@dataclass(eq=False)
class QueryConnection:
    """The DB-API connection of :meth:`Store.query_connection` and how to stop its statement.

    ``interrupt`` may be called from any thread (Ctrl-C, a timer); ``timed_out`` says the
    timer did it."""

    raw: object
    dialect: str
    interrupt: Callable[[], None]
    timed_out: bool = False

    def expire(self) -> None:
        self.timed_out = True
        self.interrupt()


#: How ``<database>_reader`` is made: it may log in as nobody and can do nothing but SELECT.
READER_ROLE_OPTIONS = "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS"

#: Roles the read-only role must not belong to (besides the store's owner): they signal other
#: sessions or reach the server's files and programs.
UNSAFE_READER_MEMBERSHIPS = (
    "pg_signal_backend",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
)


def reader_role(database: str) -> str:
    """The read-only role of a PostgreSQL store: ``<database>_reader`` (at most 63 bytes)."""
    return f"{database[:56]}_reader"


def admin_reader_sql(reader: str, owner: str) -> str:
    """The SQL an administrator runs when the store's owner may not create the reader role."""
    return f"CREATE ROLE {_ident(reader)} {READER_ROLE_OPTIONS}; GRANT {_ident(reader)} TO {_ident(owner)};"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(eq=False)
class RunRecord:
    """The run of a ``with store.run(...)`` block (see :meth:`Store.run`).

    ``id`` is None until the run starts. ``counts`` (a dict, or a function returning one,
    called when the run ends) and ``message`` are what the run is finished with; ``recorded``
    says the block has already recorded the run's end itself."""

    store: Store = field(repr=False)
    kind: str
    group: str | None = None
    params: dict | None = None
    seed: int | None = None
    id: int | None = None
    counts: dict | Callable[[], dict] | None = None
    message: str | None = None
    recorded: bool = False

    def start(self) -> int:
        """Record the run as running (once); returns its id."""
        if self.id is None:
            self.id = self.store.start_run(self.kind, group=self.group, params=self.params, seed=self.seed)
        return self.id

    def final_counts(self) -> dict | None:
        return self.counts() if callable(self.counts) else self.counts


def _arrow_column(column: pd.Series) -> pa.Array:
    if column.dtype.kind == "f":
        return pa.array(column.to_numpy())  # from numpy, NaN stays NaN (pandas would make it NULL)
    return pa.array(column, from_pandas=True)


def instrument_ids(s: Session, names: Iterable[str]) -> dict[str, int]:
    """Ids of instrument labels, creating the labels that are new."""
    names = list(dict.fromkeys(n.strip() for n in names))
    found = dict(s.execute(sa.select(Instrument.name, Instrument.id).where(Instrument.name.in_(names))).all())
    for name in names:
        if name not in found:
            inst = Instrument(name=name)
            s.add(inst)
            s.flush()
            found[name] = inst.id
    return found


_PG_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)


def _pg_binary_types(table: str, frame: pd.DataFrame) -> list[str] | None:
    """Big-endian numpy types of the table's columns for binary COPY, or None when a column
    is not a fixed-width number or holds missing values (those go through text COPY)."""
    from stemstore.store.schema import Base

    types = []
    for name in frame.columns:
        column_type = Base.metadata.tables[table].columns[name].type
        if isinstance(column_type, sa.Boolean):
            dtype = ">?"
        elif isinstance(column_type, sa.BigInteger):
            dtype = ">i8"
        elif isinstance(column_type, sa.Integer):
            dtype = ">i4"
        elif isinstance(column_type, sa.Float):
            dtype = ">f8"
        else:
            return None
        if frame[name].dtype.kind not in "iufb" or frame[name].isna().any():
            return None
        types.append(dtype)
    return types


def _pg_binary_copy(frame: pd.DataFrame, types: list[str]) -> bytes:
    """PostgreSQL's binary COPY format for a frame of fixed-width columns, built with numpy in
    one pass (no per-row Python)."""
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for i, dtype in enumerate(types):
        fields += [(f"len{i}", ">i4"), (f"v{i}", dtype)]
    rows = np.empty(len(frame), dtype=fields)
    rows["n"] = len(frame.columns)
    for i, (col, dtype) in enumerate(zip(frame.columns, types)):
        rows[f"len{i}"] = np.dtype(dtype).itemsize
        rows[f"v{i}"] = frame[col].to_numpy()
    return _PG_HEADER + rows.tobytes() + struct.pack(">h", -1)


def _parse_pg_binary_copy(data: bytes, names: list[str], dtypes: list[str]) -> pd.DataFrame:
    """Parse binary COPY output of fixed-width, non-NULL columns with numpy."""
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for name, dtype in zip(names, dtypes):
        fields += [(f"len_{name}", ">i4"), (name, dtype)]
    body = data[len(_PG_HEADER) : -2]
    rows = np.frombuffer(body, dtype=fields)
    return pd.DataFrame(
        {name: rows[name].astype(dtype.replace(">", "<")) for name, dtype in zip(names, dtypes)}
    )


def parse_url(url: str) -> sa.engine.URL:
    """``url`` as a SQLAlchemy URL of a backend a store can live in, or a one-line error."""
    try:
        sa_url = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        shown = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)  # never show a password
        detail = "its port is not a number" if isinstance(exc, ValueError) else _first_line(exc)
        raise StemstoreError(f"not a database URL or path: {shown!r}: {detail}") from exc
    backend = sa_url.get_backend_name()
    if backend not in BACKENDS:
        shown = sa_url.render_as_string(hide_password=True)
        known = ", ".join(BACKENDS.values())
        raise StemstoreError(f"cannot use database {shown}: a store lives in DuckDB or PostgreSQL ({known})")
    if sa_url.port is not None and not 0 < sa_url.port < 65536:
        shown = sa_url.render_as_string(hide_password=True)
        raise StemstoreError(f"not a database URL: {shown}: port {sa_url.port} is not between 1 and 65535")
    return sa_url


def _first_line(exc: BaseException) -> str:
    """The first line of an error's message, without SQLAlchemy's ``(driver.Error)`` prefix."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _explain_connect_error(url: str, exc: Exception) -> str:
    text = _first_line(exc)
    if "lock" in text.lower():
        return (
            f"the store {url} is in use by another process that is writing to it; "
            f"wait for it to finish ({text})"
        )
    if "could not write init file" in text:
        # A new PostgreSQL session writes the database's relation-cache file first; on a full
        # disk that fails with this bare message (no errno), before anything is read or written.
        return (
            f"cannot open the store {url}: its database server cannot write to the disk, most "
            f"likely no space left on device ({text}); nothing was changed: free space and rerun "
            "the command"
        )
    return f"cannot open the store {url}: {text}"
