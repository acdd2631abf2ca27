"""The server's SQLite database (WAL): schema and one serialized connection with transactions.

One connection guarded by a lock: every store operation is one `BEGIN IMMEDIATE` transaction, so
claims are atomic (one winner) without relying on the caller's concurrency model.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runners (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, last_seen REAL
);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, repo TEXT NOT NULL, commit_sha TEXT NOT NULL,
    workflow_path TEXT NOT NULL, params TEXT NOT NULL, labels TEXT NOT NULL,
    queue TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0,
    runner_id TEXT, lease_hash TEXT, lease_expires REAL, revivable INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL, cancel_requested INTEGER NOT NULL DEFAULT 0,
    workflow_digest TEXT NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL,
    confirmed INTEGER NOT NULL DEFAULT 0, lost_leases INTEGER NOT NULL DEFAULT 0,
    final INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_queue ON runs (queue, seq);
CREATE TABLE IF NOT EXISTS leases (
    token_hash TEXT PRIMARY KEY, run_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    runner_id TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_run ON leases (run_id, runner_id);
CREATE TABLE IF NOT EXISTS writers (
    run_id TEXT NOT NULL, writer TEXT NOT NULL, next_seq INTEGER NOT NULL,
    PRIMARY KEY (run_id, writer)
);
CREATE TABLE IF NOT EXISTS diffs (
    cursor INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, writer TEXT NOT NULL,
    seq INTEGER NOT NULL, ops TEXT NOT NULL, ts TEXT, received_at REAL NOT NULL,
    ignored INTEGER NOT NULL DEFAULT 0,
    UNIQUE (run_id, writer, seq)
);
"""

COLUMNS_ADDED = [
    # (table, column, declaration): added to databases created before the column existed
    ("runs", "confirmed", "INTEGER NOT NULL DEFAULT 0"),      # the holder called start/heartbeat
    ("runs", "lost_leases", "INTEGER NOT NULL DEFAULT 0"),    # leases that expired
    ("runs", "final", "INTEGER NOT NULL DEFAULT 0"),          # the server recorded its end
    ("diffs", "ignored", "INTEGER NOT NULL DEFAULT 0"),       # kept in history, not applied
]


def private_files(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would follow the umask; its WAL and
    shared-memory files copy the database's mode), and tighten it and them if they exist."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        if name.exists():
            os.chmod(name, 0o600)


class Database:
    """A single SQLite connection in WAL mode; `transaction()` serializes writers and readers."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        private_files(path)
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                     timeout=30.0)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.executescript(SCHEMA)
        self._add_columns()

    def _add_columns(self) -> None:
        for table, column, declaration in COLUMNS_ADDED:
            have = {r["name"] for r in self._conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE` ... `COMMIT` (rolled back on any exception), one at a time."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
