"""The store of the operators' side: dashboard sessions, the audit trail, the runners' admin
state (version, drain, revocation), and the dashboard's read queries (runs pages, runners).

Every query of the dashboard and of runner management goes through this one module, written
with `?` placeholders and no SQLite-only function, so that it moves behind the store interface
in one piece. Each function runs inside the caller's transaction (`Core.tx`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from server_stub.errors import ApiError

SCHEMA = """
CREATE TABLE IF NOT EXISTS web_sessions (
    id_hash TEXT PRIMARY KEY, who TEXT NOT NULL, created_at REAL NOT NULL,
    expires_at REAL NOT NULL, address TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS web_sessions_expiry ON web_sessions (expires_at);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, who TEXT NOT NULL,
    action TEXT NOT NULL, run_id TEXT, runner_id TEXT, detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_run ON audit (run_id, id);
CREATE INDEX IF NOT EXISTS audit_runner ON audit (runner_id, id);
CREATE TABLE IF NOT EXISTS runner_state (
    runner_id TEXT PRIMARY KEY, version TEXT, draining INTEGER NOT NULL DEFAULT 0,
    revoked_at TEXT, revoked_hash TEXT
);
CREATE INDEX IF NOT EXISTS runner_state_revoked ON runner_state (revoked_hash);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, seq);
CREATE INDEX IF NOT EXISTS runs_repo ON runs (repo, seq);
CREATE INDEX IF NOT EXISTS runs_runner ON runs (runner_id, queue);
CREATE INDEX IF NOT EXISTS runs_seq ON runs (seq)
"""

SCHEMA_POSTGRESQL = SCHEMA.replace("INTEGER PRIMARY KEY AUTOINCREMENT",
                                   "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY").replace(
    " REAL", " DOUBLE PRECISION")
"""The same tables for PostgreSQL (for the store's migrations)."""


class Conn(Protocol):
    """What the functions below need of a transaction's connection (SQLite's, or any with
    `?` placeholders and rows readable by column name)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any:
        """Run one statement."""

API_ACTOR = "admin (API)"
"""Who the audit trail names for an action taken with the admin token over the API."""
TOUCH_EVERY = 2.0
"""Seconds between two writes of a runner's last contact (every request is contact)."""


def create_schema(conn: Conn) -> None:
    """Create this module's tables (idempotent)."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def _row(row: Any) -> dict[str, Any]:
    return dict(row) if row is not None else {}


# -- sessions ---------------------------------------------------------------------------------

def add_session(conn: Conn, id_hash: str, who: str, ttl: float, address: str,
                now: float | None = None) -> None:
    """Store a new session (its id hashed) and drop the expired ones."""
    now = time.time() if now is None else now
    conn.execute("DELETE FROM web_sessions WHERE expires_at < ?", (now,))
    conn.execute("INSERT INTO web_sessions (id_hash, who, created_at, expires_at, address)"
                 " VALUES (?,?,?,?,?)", (id_hash, who, now, now + ttl, address))


def find_session(conn: Conn, id_hash: str, now: float | None = None) -> dict[str, Any] | None:
    """The live session with this hash, or None (unknown or expired)."""
    now = time.time() if now is None else now
    row = conn.execute("SELECT * FROM web_sessions WHERE id_hash = ? AND expires_at >= ?",
                       (id_hash, now)).fetchone()
    return _row(row) if row is not None else None


def drop_session(conn: Conn, id_hash: str) -> None:
    """End a session (sign-out)."""
    conn.execute("DELETE FROM web_sessions WHERE id_hash = ?", (id_hash,))


# -- audit ------------------------------------------------------------------------------------

def audit(conn: Conn, who: str, action: str, *, run_id: str | None = None,
          runner_id: str | None = None, detail: str = "", at: str) -> None:
    """Record one operator action (inside the transaction that does it)."""
    conn.execute("INSERT INTO audit (at, who, action, run_id, runner_id, detail)"
                 " VALUES (?,?,?,?,?,?)", (at, who, action, run_id, runner_id, detail))


def audit_of(conn: Conn, *, run_id: str | None = None, runner_id: str | None = None,
             limit: int = 200) -> list[dict[str, Any]]:
    """A run's or a runner's audit entries, oldest first."""
    column, value = ("run_id", run_id) if run_id is not None else ("runner_id", runner_id)
    rows = conn.execute(f"SELECT at, who, action, run_id, runner_id, detail FROM audit"
                        f" WHERE {column} = ? ORDER BY id LIMIT ?", (value, limit))
    return [_row(r) for r in rows]


# -- runners ----------------------------------------------------------------------------------

def touch_runner(conn: Conn, runner_id: str, version: str | None, last_seen: float | None,
                 now: float | None = None) -> None:
    """Record a runner's contact (at most every `TOUCH_EVERY` seconds) and its version."""
    now = time.time() if now is None else now
    if last_seen is None or now - last_seen >= TOUCH_EVERY:
        conn.execute("UPDATE runners SET last_seen = ? WHERE id = ?", (now, runner_id))
    if version:
        state = conn.execute("SELECT version FROM runner_state WHERE runner_id = ?",
                             (runner_id,)).fetchone()
        if state is None:
            conn.execute("INSERT INTO runner_state (runner_id, version) VALUES (?,?)",
                         (runner_id, version))
        elif state["version"] != version:
            conn.execute("UPDATE runner_state SET version = ? WHERE runner_id = ?",
                         (version, runner_id))


def revoked(conn: Conn, token_hash: str) -> dict[str, Any] | None:
    """The runner whose revoked token has this hash (name, revoked_at), or None."""
    row = conn.execute("SELECT s.runner_id, s.revoked_at, r.name FROM runner_state s"
                       " JOIN runners r ON r.id = s.runner_id WHERE s.revoked_hash = ?",
                       (token_hash,)).fetchone()
    return _row(row) if row is not None else None


def gate(conn: Conn, runner_id: str | None) -> None:
    """Refuse a claim from a revoked runner (401) or one the admin drains (409)."""
    if runner_id is None:
        return
    row = conn.execute("SELECT draining, revoked_at FROM runner_state WHERE runner_id = ?",
                       (runner_id,)).fetchone()
    if row is None:
        return
    if row["revoked_at"]:
        raise ApiError(401, "unauthorized", f"this runner's token was revoked at "
                       f"{row['revoked_at']}")
    if row["draining"]:
        raise ApiError(409, "runner_draining", "the admin drains this runner: it may claim no "
                       "more runs (finish the running ones, then stop)")


def _ensure_state(conn: Conn, runner_id: str) -> None:
    if conn.execute("SELECT 1 FROM runner_state WHERE runner_id = ?",
                    (runner_id,)).fetchone() is None:
        conn.execute("INSERT INTO runner_state (runner_id) VALUES (?)", (runner_id,))


def set_draining(conn: Conn, runner_id: str, draining: bool) -> None:
    """Mark a runner drained (it may claim no more) or claiming again."""
    _ensure_state(conn, runner_id)
    conn.execute("UPDATE runner_state SET draining = ? WHERE runner_id = ?",
                 (int(draining), runner_id))


def revoke(conn: Conn, runner_id: str, replacement_hash: str, at: str) -> list[str]:
    """Revoke a runner's token: the stored hash moves to `runner_state` (a later request with
    it gets 401 naming the revocation) and its runs' leases end now (the reaper re-queues
    them). Returns the ids of the runs it held."""
    row = conn.execute("SELECT token_hash FROM runners WHERE id = ?", (runner_id,)).fetchone()
    _ensure_state(conn, runner_id)
    conn.execute("UPDATE runner_state SET revoked_at = ?, revoked_hash = ? WHERE runner_id = ?",
                 (at, row["token_hash"], runner_id))
    conn.execute("UPDATE runners SET token_hash = ? WHERE id = ?", (replacement_hash, runner_id))
    held = [r["id"] for r in conn.execute(
        "SELECT id FROM runs WHERE runner_id = ? AND queue = 'leased'", (runner_id,))]
    held += [r["run_id"] for r in conn.execute(  # tasks of distributed runs it holds
        "SELECT DISTINCT run_id FROM task_jobs WHERE runner_id = ? AND queue = 'leased'",
        (runner_id,)) if r["run_id"] not in held]
    conn.execute("UPDATE runs SET lease_expires = 0 WHERE runner_id = ? AND queue = 'leased'",
                 (runner_id,))
    conn.execute("UPDATE task_jobs SET lease_expires = 0 WHERE runner_id = ?"
                 " AND queue = 'leased'", (runner_id,))
    return held


@dataclass(frozen=True)
class RunnerRow:
    """A runner as the admin sees it."""

    id: str
    name: str
    labels: list[str]
    created_at: str
    last_seen: float | None
    version: str | None
    draining: bool
    revoked_at: str | None
    current_runs: list[str]


_RUNNERS = ("SELECT r.id, r.name, r.labels, r.created_at, r.last_seen, s.version, s.draining,"
            " s.revoked_at FROM runners r LEFT JOIN runner_state s ON s.runner_id = r.id")


def _runner(conn: Conn, row: Any, current: dict[str, list[str]]) -> RunnerRow:
    return RunnerRow(id=row["id"], name=row["name"], labels=json.loads(row["labels"]),
                     created_at=row["created_at"], last_seen=row["last_seen"],
                     version=row["version"], draining=bool(row["draining"]),
                     revoked_at=row["revoked_at"], current_runs=current.get(row["id"], []))


def _current(conn: Conn, runner_ids: Sequence[str] | None) -> dict[str, list[str]]:
    """Runs leased to each runner: whole, or some of their tasks (distributed runs)."""
    whole = "SELECT id AS run_id, runner_id, seq FROM runs WHERE queue = 'leased'"
    tasks = "SELECT run_id, runner_id, seq FROM task_jobs WHERE queue = 'leased'"
    args: tuple[Any, ...] = ()
    if runner_ids is not None:
        if not runner_ids:
            return {}
        some = f" AND runner_id IN ({','.join('?' * len(runner_ids))})"
        whole, tasks = whole + some, tasks + some
        args = tuple(runner_ids) * 2
    out: dict[str, list[str]] = {}
    for r in conn.execute(f"{whole} UNION ALL {tasks} ORDER BY seq", args):
        held = out.setdefault(r["runner_id"], [])
        if r["run_id"] not in held:
            held.append(r["run_id"])
    return out


def task_runners(conn: Conn, run_id: str) -> dict[str, str]:
    """Which runner took each task of a distributed run (its latest attempt)."""
    rows = conn.execute("SELECT task_id, runner_id FROM task_jobs WHERE run_id = ?"
                        " AND runner_id IS NOT NULL", (run_id,))
    return {r["task_id"]: r["runner_id"] for r in rows}


def runners(conn: Conn) -> list[RunnerRow]:
    """Every registered runner, by name, with its current runs."""
    current = _current(conn, None)
    return [_runner(conn, r, current) for r in conn.execute(_RUNNERS + " ORDER BY r.name, r.id")]


def runner(conn: Conn, runner_id: str) -> RunnerRow | None:
    """One runner, or None."""
    row = conn.execute(_RUNNERS + " WHERE r.id = ?", (runner_id,)).fetchone()
    return None if row is None else _runner(conn, row, _current(conn, [runner_id]))


def runner_names(conn: Conn, runner_ids: Sequence[str]) -> dict[str, str]:
    """Names of these runners by id."""
    ids = [i for i in set(runner_ids) if i]
    if not ids:
        return {}
    rows = conn.execute(f"SELECT id, name FROM runners WHERE id IN ({','.join('?' * len(ids))})",
                        tuple(ids))
    return {r["id"]: r["name"] for r in rows}


# -- runs pages -------------------------------------------------------------------------------

_LIST_COLUMNS = ("seq, id, name, repo, commit_sha, workflow_path, params, status, queue, attempt,"
                 " runner_id, cancel_requested, created_at, distributed, started_at, ended_at")
"""The list's columns (the document's times are columns of the row, kept by `runs.Documents`)."""


def _filters(status: str | None, repo: str | None) -> tuple[str, list[Any]]:
    where, args = [], []
    if status:
        where.append("status = ?")
        args.append(status)
    if repo:
        where.append("repo = ?")
        args.append(repo)
    return (" WHERE " + " AND ".join(where)) if where else "", args


def count_runs(conn: Conn, *, status: str | None, repo: str | None) -> int:
    """How many runs match the filters."""
    where, args = _filters(status, repo)
    return int(conn.execute("SELECT COUNT(*) AS n FROM runs" + where, args).fetchone()["n"])


def page_runs(conn: Conn, *, status: str | None, repo: str | None, limit: int,
              offset: int) -> list[dict[str, Any]]:
    """One page of runs, most recent first (params as stored: secret ones are `***`)."""
    where, args = _filters(status, repo)
    # the page's seqs first, from an index alone: skipping rows never reads their documents
    rows = conn.execute(f"SELECT {_LIST_COLUMNS} FROM runs WHERE seq IN (SELECT seq FROM runs"
                        f"{where} ORDER BY seq DESC LIMIT ? OFFSET ?) ORDER BY seq DESC",
                        (*args, limit, offset)).fetchall()
    return [{**_row(r), "params": json.loads(r["params"])} for r in rows]


def repos_with_runs(conn: Conn) -> list[str]:
    """The repositories runs were made from (the list's filter)."""
    return [r["repo"] for r in conn.execute("SELECT DISTINCT repo FROM runs ORDER BY repo")]


def run_marks(conn: Conn, run_id: str) -> tuple[int, int]:
    """What changes when a run changes: (its last diff's cursor, its diff count); a live page
    re-renders only when these moved."""
    row = conn.execute("SELECT MAX(cursor) AS c, COUNT(*) AS n FROM diffs WHERE run_id = ?",
                       (run_id,)).fetchone()
    return int(row["c"] or 0), int(row["n"] or 0)


def list_marks(conn: Conn) -> tuple[int, int, int]:
    """What changes when any run changes: (the newest run, the newest diff, how many claims
    were made: a claim changes a run's runner before its first diff)."""
    runs_seq = conn.execute("SELECT MAX(seq) AS s FROM runs").fetchone()["s"] or 0
    cursor = conn.execute("SELECT MAX(cursor) AS c FROM diffs").fetchone()["c"] or 0
    claims = conn.execute("SELECT COUNT(*) AS n FROM leases").fetchone()["n"] or 0
    return int(runs_seq), int(cursor), int(claims)


def diff_rows(conn: Conn, run_id: str, limit: int) -> list[dict[str, Any]]:
    """The run's most recent `limit` diffs, oldest first."""
    rows = conn.execute("SELECT cursor, writer, seq, ops, ts, ignored FROM diffs WHERE run_id = ?"
                        " ORDER BY cursor DESC LIMIT ?", (run_id, limit)).fetchall()
    return [{**_row(r), "ops": json.loads(r["ops"])} for r in reversed(rows)]


def run_state(conn: Conn, run_id: str) -> dict[str, Any]:
    """A run's status and queue (cheap: the live log asks after every chunk)."""
    row = conn.execute("SELECT status, queue FROM runs WHERE id = ?", (run_id,)).fetchone()
    return _row(row)
