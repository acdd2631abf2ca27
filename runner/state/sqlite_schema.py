"""The SQLite schema of the local backend, how a connection is opened, and how SQLite's errors
become `StateError`s that name the file.

Durability choice: WAL with `synchronous=NORMAL`. A commit is in the WAL file (the OS page cache)
before `COMMIT` returns, so a killed process (SIGKILL, OOM, crash) loses nothing that was
committed. Only a power loss or kernel crash can drop the last few commits; the database is never
corrupted by it (WAL frames are checksummed). `FULL` fsyncs the WAL on every commit, which costs
one fsync per task transition (see bench/results/engine_transition.md); it is a constructor
option (`synchronous="FULL"`) for machines where power loss matters more than speed.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from runner.errors import StateError

SCHEMA_VERSION = 1
PAGE_SIZE = 1024

# `diffs.cursor` is a plain INTEGER PRIMARY KEY (not AUTOINCREMENT): rows are never deleted, so
# the rowid only grows, and we save the sqlite_sequence page write on every commit.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    status          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    ended_at        TEXT,
    initial         TEXT NOT NULL,
    snapshot        TEXT NOT NULL,
    snapshot_cursor INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at);
CREATE TABLE IF NOT EXISTS diffs (
    cursor INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    writer TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    ops    TEXT NOT NULL,
    ts     TEXT,
    lease  TEXT,
    UNIQUE (run_id, writer, seq)
);
CREATE INDEX IF NOT EXISTS diffs_by_run ON diffs (run_id, cursor);
"""

_SYNC_MODES = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})


def state_error(db_path: Path, exc: sqlite3.Error, busy_timeout: float) -> StateError:
    """Translate a SQLite error into one clear line naming the database file."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StateError(f"{db_path}: database is locked by another process "
                          f"(waited {busy_timeout:g}s)")
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return StateError(f"{db_path}: the state database is corrupt or not a Ferry database "
                          f"({text}); move it away to start afresh")
    return StateError(f"{db_path}: state database error: {text}")


def open_connection(db_path: Path, *, busy_timeout: float, synchronous: str,
                    check: bool) -> sqlite3.Connection:
    """Open (creating with mode 0600 if needed) and migrate the database; `check` runs
    `PRAGMA quick_check` so that a torn file fails here, loudly, not later."""
    mode = synchronous.upper()
    if mode not in _SYNC_MODES:
        raise StateError(f"invalid synchronous mode {synchronous!r} "
                         f"(one of {', '.join(sorted(_SYNC_MODES))})")
    db_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not db_path.exists():
        os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(db_path, timeout=busy_timeout, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if check:
            rows = conn.execute("PRAGMA quick_check").fetchall()
            if rows != [("ok",)]:
                detail = "; ".join(str(r[0]) for r in rows[:3])
                raise StateError(f"{db_path}: the state database failed its integrity check "
                                 f"({detail}); move it away to start afresh")
        # Only takes effect on a new, empty file. Each commit writes whole pages to the WAL; a
        # task transition touches ~4 pages, so 1 KiB pages write ~4x fewer bytes than 4 KiB
        # (bench/results/engine_transition.md); large snapshots just use overflow pages.
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        journal = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if journal is None or str(journal[0]).lower() != "wal":
            raise StateError(f"{db_path}: cannot switch the state database to WAL mode")
        conn.execute(f"PRAGMA synchronous = {mode}")
        conn.execute("PRAGMA foreign_keys = OFF")
        _migrate(conn, db_path)
        return conn
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise state_error(db_path, exc, busy_timeout) from exc
    except StateError:
        if conn is not None:
            conn.close()
        raise


def _migrate(conn: sqlite3.Connection, db_path: Path) -> None:
    """Create the tables on a new file; refuse a database written by a newer Ferry."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                         (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise StateError(f"{db_path}: written by a newer Ferry (schema {row[0]}, "
                             f"this one knows {SCHEMA_VERSION})")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
