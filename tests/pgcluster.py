"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary folder, a Unix socket.

Uses Debian's postgresql package (the Makefile installs it when missing). PostgreSQL refuses
to run as root, so as root the cluster runs as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(
            f"PostgreSQL's {name} not found: install Debian's postgresql package (make test does)"
        )
    return candidates[-1]


class PostgresCluster:
    def __init__(self, port: int = 55432) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="stemstore-pg-"))
        self.data = self.dir / "data"
        self.socket_dir = self.dir
        self._as_root = os.geteuid() == 0
        self.user = "postgres" if self._as_root else os.environ.get("USER", "postgres")

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> PostgresCluster:
        if self._as_root:
            shutil.chown(self.dir, "postgres")
            os.chmod(self.dir, 0o700)
        self._run(
            _pg_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        )
        self.resume()
        return self

    def halt(self) -> None:
        """Stop the server as a crash would (its data stays, :meth:`resume` starts it again)."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def resume(self) -> None:
        """Start the server on the cluster's data."""
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.dir / "log"),
            "-o",
            f"-k {self.socket_dir} -c listen_addresses='' -p {self.port} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off",
            "start",
        )

    def stop(self) -> None:
        """Stop the server if it runs (a test may have halted it) and remove the cluster."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@/{database}?host={self.socket_dir}&port={self.port}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)


if __name__ == "__main__":  # a server to develop against: python tests/pgcluster.py
    cluster = PostgresCluster().start()
    print(cluster.url(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        cluster.stop()
