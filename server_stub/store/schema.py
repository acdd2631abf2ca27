"""The schema of both databases, as migrations (`migrate`). Add a version at the end of both
lists to change the schema; never edit one that has shipped.

Version 1 of SQLite is the schema the server had before migrations existed (every statement
`IF NOT EXISTS`, columns added since then added when missing), so old data dirs migrate in place.
"""

from __future__ import annotations

from server_stub import admin_store
from server_stub.store.base import Conn
from server_stub.store.migrate import Migration, statements

_SQLITE_V1 = """
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
    workflow_digest TEXT NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL
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
    UNIQUE (run_id, writer, seq)
)
"""

_SQLITE_V1_COLUMNS = [
    # (table, column, declaration): added to databases created before the column existed
    ("runs", "confirmed", "INTEGER NOT NULL DEFAULT 0"),      # the holder called start/heartbeat
    ("runs", "lost_leases", "INTEGER NOT NULL DEFAULT 0"),    # leases that expired
    ("runs", "final", "INTEGER NOT NULL DEFAULT 0"),          # the server recorded its end
    ("diffs", "ignored", "INTEGER NOT NULL DEFAULT 0"),       # kept in history, not applied
]


def _sqlite_add_columns(conn: Conn) -> None:
    for table, column, declaration in _SQLITE_V1_COLUMNS:
        have = {r["name"] for r in conn.execute(f"PRAGMA table_info({table})").fetchall()}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


_SQLITE_V2 = """
ALTER TABLE runs ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN started_at TEXT;
ALTER TABLE runs ADD COLUMN ended_at TEXT;
UPDATE runs SET started_at = json_extract(doc, '$.started_at'),
                ended_at = json_extract(doc, '$.ended_at')
"""

_SECRETS = """
CREATE TABLE IF NOT EXISTS secrets (
    scope TEXT NOT NULL, name TEXT NOT NULL, nonce {blob} NOT NULL, sealed {blob} NOT NULL,
    updated_at TEXT NOT NULL, PRIMARY KEY (scope, name)
);
CREATE TABLE IF NOT EXISTS run_secrets (
    run_id TEXT NOT NULL, name TEXT NOT NULL, nonce {blob} NOT NULL, sealed {blob} NOT NULL,
    PRIMARY KEY (run_id, name)
)
"""
"""Secrets at rest (`server_stub.secrets`); IF NOT EXISTS: data dirs of the release that added
them before migrations existed have them already."""

_TASK_JOBS = """
CREATE TABLE task_jobs (
    seq {serial}, run_id TEXT NOT NULL REFERENCES runs (id), task_id TEXT NOT NULL,
    labels TEXT NOT NULL, queue TEXT NOT NULL CHECK (queue IN ('queued', 'leased', 'done')),
    attempt INTEGER NOT NULL DEFAULT 0, runner_id TEXT, lease_hash TEXT,
    lease_expires {real}, confirmed INTEGER NOT NULL DEFAULT 0,
    lost_leases INTEGER NOT NULL DEFAULT 0,
    UNIQUE (run_id, task_id)
);
CREATE INDEX task_jobs_queue ON task_jobs (queue, seq);
ALTER TABLE runs ADD COLUMN distributed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE leases ADD COLUMN task_id TEXT NOT NULL DEFAULT ''
"""
"""Distributed runs: one job per ready task, leased on its own (`server_stub.distribute`)."""

SQLITE = [
    Migration(1, "initial schema", statements(_SQLITE_V1), _sqlite_add_columns),
    Migration(2, "run times and document revision in the row", statements(_SQLITE_V2)),
    Migration(3, "secrets", statements(_SECRETS.format(blob="BLOB"))),
    # IF NOT EXISTS: data dirs of the release that added them before migrations have them
    Migration(4, "dashboard sessions, audit trail, runner admin state",
              statements(admin_store.SCHEMA)),
    Migration(5, "task jobs of distributed runs", statements(_TASK_JOBS.format(
        serial="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL"))),
]

_POSTGRES_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runners (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, last_seen DOUBLE PRECISION
);
CREATE TABLE runs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, repo TEXT NOT NULL, commit_sha TEXT NOT NULL,
    workflow_path TEXT NOT NULL, params TEXT NOT NULL, labels TEXT NOT NULL,
    queue TEXT NOT NULL CHECK (queue IN ('queued', 'leased', 'paused', 'done', 'external')),
    attempt INTEGER NOT NULL DEFAULT 0,
    runner_id TEXT, lease_hash TEXT, lease_expires DOUBLE PRECISION,
    revivable INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL, cancel_requested INTEGER NOT NULL DEFAULT 0,
    workflow_digest TEXT NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL,
    confirmed INTEGER NOT NULL DEFAULT 0, lost_leases INTEGER NOT NULL DEFAULT 0,
    final INTEGER NOT NULL DEFAULT 0,
    rev INTEGER NOT NULL DEFAULT 0, started_at TEXT, ended_at TEXT
);
CREATE INDEX runs_queue ON runs (queue, seq);
CREATE TABLE leases (
    token_hash TEXT PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs (id),
    attempt INTEGER NOT NULL, runner_id TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
    UNIQUE (run_id, attempt)
);
CREATE INDEX leases_run ON leases (run_id, runner_id);
CREATE TABLE writers (
    run_id TEXT NOT NULL REFERENCES runs (id), writer TEXT NOT NULL,
    next_seq INTEGER NOT NULL CHECK (next_seq >= 1),
    PRIMARY KEY (run_id, writer)
);
CREATE TABLE diffs (
    cursor BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id), writer TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 1), ops TEXT NOT NULL, ts TEXT,
    received_at DOUBLE PRECISION NOT NULL, ignored INTEGER NOT NULL DEFAULT 0,
    UNIQUE (run_id, writer, seq)
);
CREATE TABLE logs (
    run_id TEXT NOT NULL REFERENCES runs (id), task TEXT NOT NULL,
    size BIGINT NOT NULL DEFAULT 0 CHECK (size >= 0),
    PRIMARY KEY (run_id, task)
);
CREATE TABLE log_chunks (
    run_id TEXT NOT NULL, task TEXT NOT NULL, start BIGINT NOT NULL CHECK (start >= 0),
    data BYTEA NOT NULL CHECK (length(data) > 0),
    PRIMARY KEY (run_id, task, start),
    FOREIGN KEY (run_id, task) REFERENCES logs (run_id, task) ON DELETE CASCADE
)
"""

POSTGRESQL = [
    Migration(1, "initial schema", statements(_POSTGRES_V1)),
    Migration(2, "run times and document revision in the row"),  # in v1 already: same numbers
    Migration(3, "secrets", statements(_SECRETS.format(blob="BYTEA"))),
    Migration(4, "dashboard sessions, audit trail, runner admin state",
              statements(admin_store.SCHEMA_POSTGRESQL)),
    Migration(5, "task jobs of distributed runs", (
        *statements(_TASK_JOBS.format(serial="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                                      real="DOUBLE PRECISION")),
        # a run's task leases number their attempts per task
        "ALTER TABLE leases DROP CONSTRAINT leases_run_id_attempt_key",
        "ALTER TABLE leases ADD CONSTRAINT leases_attempt UNIQUE (run_id, task_id, attempt)",
        "ALTER TABLE runs DROP CONSTRAINT runs_queue_check",
        "ALTER TABLE runs ADD CONSTRAINT runs_queue_check CHECK (queue IN ('queued', 'leased',"
        " 'paused', 'done', 'external', 'distributed'))")),
]
