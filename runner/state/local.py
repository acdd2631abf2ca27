"""The local state backend: run documents and their diff history in one SQLite file, task logs
as append-only files.

Every write is a diff applied in its own `BEGIN IMMEDIATE` transaction: the writer's seq is
checked (a duplicate is acknowledged and ignored, a gap refused), the operations are applied to
the materialized document, the diff row is inserted, and the whole is committed or nothing is.

The materialized document is kept in memory per run together with the cursor of the last diff
folded into it. Inside the write transaction one indexed query tells whether another process
wrote since; if not (the common single-writer case) the cost of a diff is O(size of the diff).
The document is written back as a snapshot only now and then (see `_snapshot_due`), so that
`load` is "snapshot + later diffs" and a run's total write volume stays linear in its diffs.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.diff import Diff, PatchConflict, apply_ops
from runner.document import utc_now
from runner.errors import SeqGap, StateError, UnknownRun
from runner.state.backend import RunSummary, check_prefix, only_match
from runner.state.logfiles import TaskLogs
from runner.state.sqlite_schema import open_connection, state_error

"""A run id prefix shorter than this is not looked up (like git's short SHAs)."""

_ROW_FIELDS = ("name", "status", "started_at", "ended_at")
_MOVING = ("Pending", "Running")
"""Run statuses after which more diffs soon follow: no snapshot is written on entering them."""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass
class _Materialized:
    """A run's document as of diff `cursor`, and the bookkeeping that decides snapshots."""

    doc: dict[str, Any]
    cursor: int
    row: tuple[Any, ...]
    since_snapshot: int
    bytes_since_snapshot: int
    snapshot_bytes: int


class LocalBackend:
    """`StateBackend` on a SQLite file (WAL); safe for several threads and processes."""

    shared = False
    """One process executes a run at a time (its run lock, or its lease)."""

    def announce(self, writer: str) -> None:
        """Nothing to announce: no other process executes this run meanwhile."""

    def alive(self, writer: str) -> bool:
        """No other process runs tasks of our runs: a Running task found is interrupted."""
        return False

    def __init__(self, db_path: Path, logs_dir: Path, *, busy_timeout: float = 10.0,
                 snapshot_every: int = 200, synchronous: str = "NORMAL",
                 check_on_open: bool = True, clock: Callable[[], str] = utc_now) -> None:
        self.db_path = Path(db_path)
        self.logs_dir = Path(logs_dir)
        self._logs = TaskLogs(self.logs_dir)
        self.busy_timeout = busy_timeout
        self.snapshot_every = max(1, snapshot_every)
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, _Materialized] = {}
        self._conn: sqlite3.Connection | None = open_connection(
            self.db_path, busy_timeout=busy_timeout, synchronous=synchronous,
            check=check_on_open)

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database connection. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._cache.clear()

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection; `StateError` after `close()`."""
        if self._conn is None:
            raise StateError(f"{self.db_path}: the state backend is closed")
        return self._conn

    def _error(self, exc: sqlite3.Error) -> StateError:
        return state_error(self.db_path, exc, self.busy_timeout)

    # -- runs ----------------------------------------------------------------------------------

    def create_run(self, doc: dict[str, Any]) -> None:
        """Store a new run; creating the same document again is a no-op, another one an error."""
        text = _dumps(doc)
        run_id = str(doc["id"])
        with self._lock:
            try:
                conn = self.conn
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute("SELECT initial FROM runs WHERE id = ?",
                                       (run_id,)).fetchone()
                    if row is not None:
                        conn.execute("ROLLBACK")
                        if row[0] != text:
                            raise StateError(f"run {run_id} already exists with other content")
                        return
                    conn.execute(
                        "INSERT INTO runs (id, name, status, created_at, started_at, ended_at,"
                        " initial, snapshot, snapshot_cursor) VALUES (?,?,?,?,?,?,?,?,0)",
                        (run_id, doc.get("name") or "", doc.get("status") or "Pending",
                         doc.get("created_at") or self._clock(), doc.get("started_at"),
                         doc.get("ended_at"), text, text))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    def resolve_run_id(self, prefix: str) -> str:
        """The full id of the run whose id is `prefix` or starts with it (unique, >= 4 chars)."""
        prefix = prefix.strip().lower()
        with self._lock:
            try:
                conn = self.conn
                if conn.execute("SELECT 1 FROM runs WHERE id = ?", (prefix,)).fetchone():
                    return prefix
                check_prefix(prefix)
                # A range scan on the primary key: LIKE would need escaping and skip the index.
                rows = conn.execute("SELECT id FROM runs WHERE id >= ? AND id < ? LIMIT 2",
                                    (prefix, prefix + "\U0010ffff")).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
        return only_match(prefix, [str(r[0]) for r in rows])

    def load(self, run_id: str) -> dict[str, Any]:
        """The materialized document (a private copy); accepts a unique id prefix."""
        full = self.resolve_run_id(run_id)
        with self._lock:
            try:
                conn = self.conn
                conn.execute("BEGIN")
                try:
                    entry = self._refresh(full)
                    text = _dumps(entry.doc)
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._cache.pop(full, None)
                raise self._error(exc) from exc
        copy: dict[str, Any] = json.loads(text)
        return copy

    def position(self, run_id: str, writer: str) -> tuple[int, int]:
        """(latest cursor of the run, last seq of `writer` in it): two index lookups."""
        with self._lock:
            try:
                if not self.conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
                    raise UnknownRun(f"unknown run id '{run_id}'")
                cursor = self.conn.execute("SELECT MAX(cursor) FROM diffs WHERE run_id = ?",
                                           (run_id,)).fetchone()
                seq = self.conn.execute("SELECT MAX(seq) FROM diffs WHERE run_id = ? AND "
                                        "writer = ?", (run_id, writer)).fetchone()
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
        return int(cursor[0] or 0), int(seq[0] or 0)

    def _refresh(self, run_id: str) -> _Materialized:
        """Bring the cached document up to date; call inside a transaction, holding the lock."""
        conn = self.conn
        entry = self._cache.get(run_id)
        if entry is None:
            row = conn.execute(
                "SELECT snapshot, snapshot_cursor, name, status, started_at, ended_at"
                " FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise UnknownRun(f"unknown run id '{run_id}'")
            entry = _Materialized(doc=json.loads(row[0]), cursor=int(row[1]), row=tuple(row[2:]),
                                  since_snapshot=0, bytes_since_snapshot=0,
                                  snapshot_bytes=len(row[0]))
        rows = conn.execute("SELECT cursor, ops FROM diffs WHERE run_id = ? AND cursor > ?"
                            " ORDER BY cursor", (run_id, entry.cursor)).fetchall()
        try:
            for cursor, ops in rows:
                apply_ops(entry.doc, json.loads(ops))
                entry.cursor = int(cursor)
                entry.since_snapshot += 1
                entry.bytes_since_snapshot += len(ops)
        except PatchConflict as exc:
            self._cache.pop(run_id, None)
            raise StateError(f"{self.db_path}: stored history of run {run_id} does not fold "
                             f"({exc})") from exc
        self._cache[run_id] = entry
        return entry

    # -- diffs ---------------------------------------------------------------------------------

    def apply(self, diff: Diff) -> bool:
        """Apply `diff` atomically; False for a duplicate, `SeqGap` for a gap, `PatchConflict`
        (nothing applied) when the operations do not apply."""
        ops_text = _dumps(diff.ops)
        with self._lock:
            conn = self.conn
            mutated = False
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute("SELECT MAX(seq) FROM diffs WHERE run_id = ? AND writer = ?",
                                       (diff.run_id, diff.writer)).fetchone()
                    last = int(row[0] or 0)
                    if 1 <= diff.seq <= last:
                        conn.execute("ROLLBACK")
                        return False
                    if diff.seq != last + 1:
                        raise SeqGap(writer=diff.writer, got=diff.seq, expected=last + 1)
                    entry = self._refresh(diff.run_id)
                    mutated = True
                    # Fresh objects from the JSON text: the caller's op values must never
                    # become shared parts of the cached document.
                    apply_ops(entry.doc, json.loads(ops_text))
                    cur = conn.execute(
                        "INSERT INTO diffs (run_id, writer, seq, ops, ts, lease)"
                        " VALUES (?,?,?,?,?,?)",
                        (diff.run_id, diff.writer, diff.seq, ops_text,
                         diff.ts or self._clock(), diff.lease))
                    entry.cursor = int(cur.lastrowid or 0)
                    entry.since_snapshot += 1
                    entry.bytes_since_snapshot += len(ops_text)
                    self._write_run_row(entry, diff.run_id)
                    conn.execute("COMMIT")
                    return True
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    if mutated:
                        # The in-memory copy may hold the failed diff; rebuild it on next use.
                        self._cache.pop(diff.run_id, None)
                    raise
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    def _write_run_row(self, entry: _Materialized, run_id: str) -> None:
        """Update the list columns when they changed; write a snapshot when one is due."""
        doc = entry.doc
        row = tuple(doc.get(name) for name in _ROW_FIELDS)
        changed = row != entry.row
        if changed:
            self.conn.execute(
                "UPDATE runs SET name = ?, status = ?, started_at = ?, ended_at = ? WHERE id = ?",
                (*row, run_id))
            # A run that stops (ends, or waits for a trigger) is snapshotted, so that reading
            # it later folds no diffs; one that starts running soon changes again.
            stopped = row[1] != entry.row[1] and row[1] not in _MOVING
            entry.row = row
        else:
            stopped = False
        if stopped or self._snapshot_due(entry):
            text = _dumps(doc)
            self.conn.execute("UPDATE runs SET snapshot = ?, snapshot_cursor = ? WHERE id = ?",
                              (text, entry.cursor, run_id))
            entry.since_snapshot = 0
            entry.bytes_since_snapshot = 0
            entry.snapshot_bytes = len(text)

    def _snapshot_due(self, entry: _Materialized) -> bool:
        """At least `snapshot_every` diffs and as many diff bytes as half a snapshot: rewriting
        the document then costs at most twice the diffs' own bytes, so the total stays linear
        even for a 10,000-task document, and `load` folds at most about a snapshot's worth."""
        return (entry.since_snapshot >= self.snapshot_every
                and 2 * entry.bytes_since_snapshot >= entry.snapshot_bytes)

    def changes_since(self, run_id: str, cursor: int) -> tuple[list[Diff], int]:
        """Diffs applied after `cursor` and the new cursor (`Diff.meta["cursor"]` on each)."""
        with self._lock:
            try:
                rows = self.conn.execute(
                    "SELECT cursor, writer, seq, ops, ts, lease FROM diffs"
                    " WHERE run_id = ? AND cursor > ? ORDER BY cursor", (run_id, cursor)
                ).fetchall()
                if not rows and not self.conn.execute(
                        "SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
                    raise UnknownRun(f"unknown run id '{run_id}'")
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
        diffs = [_diff(run_id, row) for row in rows]
        return diffs, (int(rows[-1][0]) if rows else cursor)

    def history(self, run_id: str) -> list[Diff]:
        """Every diff of the run in the order applied."""
        diffs, _ = self.changes_since(run_id, 0)
        return diffs

    def initial(self, run_id: str) -> dict[str, Any]:
        """The document as created, before any diff: history folds onto it."""
        with self._lock:
            try:
                row = self.conn.execute("SELECT initial FROM runs WHERE id = ?",
                                        (run_id,)).fetchone()
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
        if row is None:
            raise UnknownRun(f"unknown run id '{run_id}'")
        doc: dict[str, Any] = json.loads(row[0])
        return doc

    def list_runs(self, limit: int = 20, status: str | None = None) -> list[RunSummary]:
        """Most recent runs first, optionally only those with `status`."""
        sql = "SELECT id, name, status, created_at, started_at, ended_at FROM runs"
        args: list[Any] = []
        if status:
            sql += " WHERE status = ?"
            args.append(status)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        args.append(max(0, limit))
        with self._lock:
            try:
                rows = self.conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
        return [RunSummary(id=r[0], name=r[1], status=r[2], created_at=r[3], started_at=r[4],
                           ended_at=r[5]) for r in rows]

    # -- logs ----------------------------------------------------------------------------------

    def log_path(self, run_id: str, task_id: str) -> Path:
        """The append-only log file of one task."""
        return self._logs.path(run_id, task_id)

    def append_log(self, run_id: str, task_id: str, data: bytes) -> None:
        """Append raw output of a task (written through, so `logs --follow` sees it)."""
        self._logs.append(run_id, task_id, data)

    def read_log(self, run_id: str, task_id: str, offset: int = 0) -> bytes:
        """A task's output from byte `offset` on (empty if it has written nothing yet)."""
        return self._logs.read(run_id, task_id, offset)


def _diff(run_id: str, row: tuple[Any, ...]) -> Diff:
    cursor, writer, seq, ops, ts, lease = row
    return Diff(run_id=run_id, writer=writer, seq=int(seq), ops=json.loads(ops), ts=ts,
                lease=lease, meta={"cursor": int(cursor)})


def fold(initial: dict[str, Any], diffs: list[Diff]) -> dict[str, Any]:
    """The document obtained by applying `diffs` in order to a copy of `initial`."""
    doc: dict[str, Any] = json.loads(_dumps(initial))
    for diff in diffs:
        apply_ops(doc, json.loads(_dumps(diff.ops)))
    return doc
