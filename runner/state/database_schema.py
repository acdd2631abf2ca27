"""The `database` state backend's schema (PostgreSQL), its versions, and how a connection is
opened: one clear `StateError` naming the database (never its password) when it cannot be.

Tables are prefixed `state_`, so a database may also hold a control plane's tables. The schema
version is in `state_meta`; a start creates what is missing under an advisory lock (several
processes may start at once) and refuses a database written by a newer Ferry.
"""

from __future__ import annotations

from typing import Any

from runner.errors import StateError

SCHEMA_VERSION = 1
LOCK_CLASS = 0x46525354  # "FRST": advisory locks of this backend (migration, writers)

SCHEMA = """
CREATE TABLE IF NOT EXISTS state_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state_runs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL,
    started_at TEXT, ended_at TEXT, initial TEXT NOT NULL, snapshot TEXT NOT NULL,
    snapshot_cursor BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS state_runs_by_created ON state_runs (created_at);
CREATE TABLE IF NOT EXISTS state_diffs (
    cursor BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES state_runs (id), writer TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 1), ops TEXT NOT NULL, ts TEXT, lease TEXT,
    UNIQUE (run_id, writer, seq)
);
CREATE INDEX IF NOT EXISTS state_diffs_by_run ON state_diffs (run_id, cursor);
CREATE TABLE IF NOT EXISTS state_logs (
    run_id TEXT NOT NULL REFERENCES state_runs (id), task_id TEXT NOT NULL,
    size BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (run_id, task_id)
);
CREATE TABLE IF NOT EXISTS state_log_chunks (
    run_id TEXT NOT NULL, task_id TEXT NOT NULL, start BIGINT NOT NULL, data BYTEA NOT NULL,
    PRIMARY KEY (run_id, task_id, start),
    FOREIGN KEY (run_id, task_id) REFERENCES state_logs (run_id, task_id)
)
"""


def redacted(url: str) -> str:
    """`url` without its password."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(url)
    except Exception:  # an unparsable URL: say so rather than echo it
        return "postgresql://(unparsable URL)"
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


def connect(url: str, *, autocommit: bool = False) -> Any:
    """A psycopg connection; `StateError` naming the database when it cannot be opened."""
    try:
        import psycopg
    except ImportError as exc:
        raise StateError("stateManagement.backend 'database' needs psycopg: pip install "
                         "'ferry-runner[postgresql]'") from exc
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.Error as exc:
        raise StateError(f"{redacted(url)}: cannot connect to the state database: "
                         f"{' '.join(str(exc).split())}") from exc


def migrate(conn: Any, url: str) -> None:
    """Create the tables on a new database; refuse one written by a newer Ferry."""
    import psycopg

    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s::int, 0)", (LOCK_CLASS,))
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM state_meta WHERE key = 'schema_version'"
                               ).fetchone()
            if row is None:
                conn.execute("INSERT INTO state_meta VALUES ('schema_version', %s)",
                             (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StateError(f"{redacted(url)}: written by a newer Ferry (schema {row[0]},"
                                 f" this one knows {SCHEMA_VERSION})")
    except psycopg.Error as exc:
        raise StateError(f"{redacted(url)}: cannot set up the state database: "
                         f"{' '.join(str(exc).split())}") from exc
