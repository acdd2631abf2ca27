"""A throwaway PostgreSQL cluster for tests and benchmarks: Debian's server binaries, `initdb`
in a private directory, `pg_ctl` on a free 127.0.0.1 port, a fresh database per test.

    with PgCluster.start() as pg:
        url = pg.new_database()   # postgresql://postgres@127.0.0.1:PORT/t_...

initdb refuses to run as root: as root the cluster runs as the `postgres` user (Debian's
`postgresql` package creates it). Never a mock: the server and the runner talk to it over TCP.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any


class PgUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine (scripts/setup installs them)."""


def bin_dir() -> Path:
    """The newest installed PostgreSQL's bin directory (holding initdb and pg_ctl)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise PgUnavailable("no PostgreSQL server (initdb) found; scripts/setup installs Debian's "
                        "postgresql")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """A running cluster in its own directory, removed by `stop()`."""

    def __init__(self, root: Path, port: int, user: str | None) -> None:
        self.root = root
        self.port = port
        self.user = user
        self.bin = bin_dir()

    @classmethod
    def start(cls, max_connections: int = 400) -> PgCluster:
        """initdb + pg_ctl start; raises PgUnavailable or CalledProcessError."""
        binaries = bin_dir()
        user = "postgres" if os.geteuid() == 0 else None
        # not under pytest's 0700 temp dir: the postgres user could not reach it
        root = Path(tempfile.mkdtemp(prefix="ferry-pg-"))
        if user:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        cluster = cls(root, _free_port(), user)
        cluster._run([str(binaries / "initdb"), "-D", str(root / "data"), "-U", "postgres",
                      "--auth=trust", "-E", "UTF8", "--no-sync", "-N"])
        options = (f"-p {cluster.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c synchronous_commit=off -c full_page_writes=off "
                   f"-c max_connections={max_connections} -c shared_buffers=64MB")
        cluster._run([str(binaries / "pg_ctl"), "-D", str(root / "data"), "-l",
                      str(root / "server.log"), "-o", options, "-w", "-t", "60", "start"])
        return cluster

    def _run(self, argv: list[str]) -> None:
        kw: dict[str, Any] = {"user": self.user} if self.user else {}
        done = subprocess.run(argv, capture_output=True, text=True, cwd=self.root, **kw)
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, argv, done.stdout,
                                                done.stderr + self.log()[-2000:])

    def log(self) -> str:
        """The server's log so far."""
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def url(self, database: str = "postgres") -> str:
        """A URL for `database` on this cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """Create an empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """pg_ctl stop (fast) and remove the directory."""
        try:
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast",
                       "-w", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
