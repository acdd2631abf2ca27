"""Run rows: insert, read, list, the materialized documents (cached), and server-written diffs."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from runner.api.protocol import RunInfo
from runner.diff import PatchConflict, apply_ops
from server_stub.errors import ApiError, not_found
from server_stub.store.base import Conn, Row

SERVER_WRITER = "server"


def now_iso() -> str:
    """The current UTC time in ISO 8601 (what run documents use)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_ROW = "SELECT * FROM runs"


def get_row(conn: Conn, run_id: str, *, lock: bool = True) -> Row:
    """The run's row, locked for the rest of the transaction unless `lock` is False (readers);
    404 when there is none. Every operation that changes a run reads it this way first, so two
    servers on one PostgreSQL change a run one after the other."""
    row = conn.execute(_ROW + " WHERE id = ?" + (conn.dialect.lock if lock else ""),
                       (run_id,)).fetchone()
    if row is None:
        raise not_found("run", run_id)
    return dict(row)


def to_info(row: Row) -> RunInfo:
    """The queue's view of a run."""
    return RunInfo(id=row["id"], name=row["name"], repo=row["repo"], commit=row["commit_sha"],
                   workflow_path=row["workflow_path"], params=json.loads(row["params"]),
                   labels=json.loads(row["labels"]), status=row["status"], queue=row["queue"],
                   attempt=row["attempt"], runner_id=row["runner_id"],
                   cancel_requested=bool(row["cancel_requested"]), created_at=row["created_at"],
                   started_at=_text(row, "started_at"), ended_at=_text(row, "ended_at"),
                   distributed=bool(row.get("distributed")))


def _text(row: Row, key: str) -> str | None:
    """A text column; None when absent or not text."""
    value = row.get(key)
    return value if isinstance(value, str) else None


def _time(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) else None


def insert(conn: Conn, doc: dict[str, Any], *, repo: str, commit: str,
           workflow_path: str, labels: list[str], queue: str,
           runner_id: str | None = None, distributed: bool = False) -> None:
    """Store a new run with its initial document."""
    conn.execute(
        "INSERT INTO runs (id, name, repo, commit_sha, workflow_path, params, labels, queue,"
        " runner_id, status, cancel_requested, workflow_digest, created_at, doc, started_at,"
        " ended_at, distributed) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (doc["id"], str(doc.get("name") or ""), repo, commit, workflow_path,
         json.dumps(doc.get("params") or {}), json.dumps(sorted(set(labels))), queue, runner_id,
         str(doc.get("status", "Pending")), int(bool(doc.get("cancel_requested"))),
         str(doc.get("workflow_digest", "")), str(doc.get("created_at") or now_iso()),
         json.dumps(doc, separators=(",", ":")), _time(doc, "started_at"),
         _time(doc, "ended_at"), int(distributed)))


def list_rows(conn: Conn, *, status: str | None, repo: str | None,
              queue: str | None, limit: int, owner: str | None = None) -> list[Row]:
    """Most recent runs first, filtered; with `owner` (a runner id) only the runs that runner
    holds, held or reported."""
    where: list[str] = []
    args: list[object] = []
    for column, value in (("status", status), ("repo", repo), ("queue", queue)):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    if owner is not None:
        where.append("(runner_id = ? OR id IN (SELECT run_id FROM leases WHERE runner_id = ?))")
        args += [owner, owner]
    sql = _ROW + (" WHERE " + " AND ".join(where) if where else "")
    return list(conn.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit)))


class Documents:
    """Parsed run documents kept between requests so a diff batch does not re-parse a big
    document. Each entry remembers the row's `rev` (bumped by every save, on any server), and is
    used only while the row still has it; callers hold the run's row lock (`get_row`) while they
    change a document, and `drop` the entry whenever a transaction that touched it fails."""

    def __init__(self, capacity: int = 64) -> None:
        self._docs: OrderedDict[str, tuple[int, dict[str, Any]]] = OrderedDict()
        self._capacity = capacity

    def get(self, conn: Conn, run_id: str) -> dict[str, Any]:
        """The materialized document (the cached object: mutate only inside a transaction)."""
        row = conn.execute("SELECT rev FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise not_found("run", run_id)
        rev = int(row["rev"])
        cached = self._docs.get(run_id)
        if cached is not None and cached[0] == rev:
            self._docs.move_to_end(run_id)
            return cached[1]
        doc: dict[str, Any] = json.loads(get_row(conn, run_id)["doc"])
        self._docs[run_id] = (rev, doc)
        self._docs.move_to_end(run_id)
        while len(self._docs) > self._capacity:
            self._docs.popitem(last=False)
        return doc

    def drop(self, run_id: str) -> None:
        """Forget a document (after a failed transaction)."""
        self._docs.pop(run_id, None)

    def clear(self) -> None:
        """Forget every document (after a failed transaction that touched several runs)."""
        self._docs.clear()

    def save(self, conn: Conn, run_id: str, doc: dict[str, Any],
             text: str | None = None) -> None:
        """Write the document once (`text`: its JSON when the caller made it already), copy
        the fields the queue filters and lists on into the row, and bump its `rev`."""
        if text is None:
            text = json.dumps(doc, separators=(",", ":"))
        row = conn.execute("SELECT rev FROM runs WHERE id = ?", (run_id,)).fetchone()
        rev = int(row["rev"]) + 1
        conn.execute("UPDATE runs SET doc = ?, status = ?, cancel_requested = ?, started_at = ?,"
                     " ended_at = ?, rev = ? WHERE id = ?",
                     (text, str(doc.get("status", "")), int(bool(doc.get("cancel_requested"))),
                      _time(doc, "started_at"), _time(doc, "ended_at"), rev, run_id))
        self._docs[run_id] = (rev, doc)


def check_ops(ops: list[dict[str, Any]]) -> None:
    """Refuse operations that would replace the whole document or change its id."""
    for i, op in enumerate(ops):
        for key in ("path", "from"):
            target = op.get(key)
            if key == "path" and not isinstance(target, str):
                raise PatchConflict(f"ops[{i}]: 'path' must be a string")
            if isinstance(target, str) and (target in ("", "/id") or target.startswith("/id/")):
                raise PatchConflict(f"ops[{i}]: may not change '{target or '/'}'")


def next_seq(conn: Conn, run_id: str, writer: str) -> int:
    """The seq the store expects next from this writer (1 for a new writer)."""
    row = conn.execute("SELECT next_seq FROM writers WHERE run_id = ? AND writer = ?",
                       (run_id, writer)).fetchone()
    return int(row["next_seq"]) if row else 1


def record_diff(conn: Conn, run_id: str, writer: str, seq: int,
                ops: list[dict[str, Any]], ts: str | None, *, ignored: bool = False) -> None:
    """Append a diff to the history (`ignored`: kept but not applied) and advance its writer."""
    conn.execute("INSERT INTO diffs (run_id, writer, seq, ops, ts, received_at, ignored)"
                 " VALUES (?,?,?,?,?,?,?)",
                 (run_id, writer, seq, json.dumps(ops), ts, time.time(), int(ignored)))
    conn.execute("INSERT INTO writers (run_id, writer, next_seq) VALUES (?,?,?)"
                 " ON CONFLICT (run_id, writer) DO UPDATE SET next_seq = excluded.next_seq",
                 (run_id, writer, seq + 1))


def server_diff(conn: Conn, docs: Documents, run_id: str,
                ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply and record a diff written by the server itself (writer `server`); returns the doc."""
    doc = docs.get(conn, run_id)
    try:
        apply_ops(doc, ops)
    except PatchConflict as exc:
        docs.drop(run_id)
        raise ApiError(409, "conflict", f"run {run_id}: {exc}") from exc
    record_diff(conn, run_id, SERVER_WRITER, next_seq(conn, run_id, SERVER_WRITER), ops, now_iso())
    docs.save(conn, run_id, doc)
    return doc


def history(conn: Conn, run_id: str) -> list[dict[str, Any]]:
    """Every diff of the run in the order received; one kept but not applied (a late diff to a
    final run) carries `"ignored": true`."""
    return [{"cursor": r["cursor"], "writer": r["writer"], "seq": r["seq"],
             "ops": json.loads(r["ops"]), "ts": r["ts"], **({"ignored": True} if r["ignored"]
                                                            else {})}
            for r in conn.execute("SELECT * FROM diffs WHERE run_id = ? ORDER BY cursor",
                                  (run_id,)).fetchall()]
