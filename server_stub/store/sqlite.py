"""The embedded database: one SQLite file (WAL) in the data dir, one connection, one lock.

Every transaction is `BEGIN IMMEDIATE` under a process lock, so claims are atomic (one winner)
without relying on the caller's concurrency model. Only one server process may use the file.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from server_stub.store.base import SQLITE, Cursor, Dialect
from server_stub.store.migrate import migrate
from server_stub.store.schema import SQLITE as MIGRATIONS


def private_files(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would follow the umask; its WAL and
    shared-memory files copy the database's mode), and tighten it and them if they exist."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        if name.exists():
            os.chmod(name, 0o600)


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}


class SqliteConn:
    """A transaction's view of the connection (`base.Conn`)."""

    __slots__ = ("_conn", "dialect")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.dialect: Dialect = SQLITE

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement."""
        return self._conn.execute(sql, tuple(params))


class SqliteDatabase:
    """A single SQLite connection in WAL mode (`base.Database`)."""

    dialect = SQLITE

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        private_files(path)
        self.path = path
        self.url = str(path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                     timeout=30.0)
        self._conn.row_factory = _dict_row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._view = SqliteConn(self._conn)
        migrate(self, MIGRATIONS)

    @contextmanager
    def transaction(self) -> Iterator[SqliteConn]:
        """`BEGIN IMMEDIATE` ... `COMMIT` (rolled back on any exception), one at a time."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._view
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def listen(self, wakes: Mapping[str, Callable[[], None]]) -> None:
        """Nothing to listen to: this process is the only one on the file."""

    def publish(self, channel: str) -> None:
        """Nobody else to tell (this server's own waiters are woken by its notifier)."""

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
