"""The `database` state backend: run documents, their diff history and task logs in PostgreSQL,
shared by every `ferry run`/`resume` process pointed at it (on any machine).

Every write is a diff applied in one transaction that locks the run's row: the writer's seq is
checked (a duplicate is acknowledged and ignored, a gap refused), the operations are applied to
the document as of the latest diff, the diff row is inserted, and the whole commits or nothing
does. Processes sharing a run take tasks with a `test` operation (a task starts only if it is
still Pending, `RunLoop.start`), and each holds a PostgreSQL advisory lock per writer for as
long as it lives (`announce`), so that another process can tell a task whose runner died
(`alive` is False: the lock went with its connection) from one that is running elsewhere.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from runner.diff import Diff, PatchConflict, apply_ops
from runner.document import utc_now
from runner.errors import SeqGap, StateError, UnknownRun
from runner.state.backend import RunSummary, check_prefix, only_match
from runner.state.database_schema import LOCK_CLASS, connect, migrate

SNAPSHOT_EVERY = 200


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class DatabaseBackend:
    """`StateBackend` on PostgreSQL (`stateManagement.backend: database`)."""

    shared = True
    """Several processes execute the same runs: tasks are taken with a `test` op."""

    def __init__(self, url: str, *, clock: Callable[[], str] = utc_now) -> None:
        self.url = url
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = connect(url)
        self._presence: Any = None  # the connection holding this process's writer locks
        self._announced: set[str] = set()
        self._cache: dict[str, tuple[int, dict[str, Any]]] = {}
        migrate(self._conn, url)

    # -- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        import psycopg

        with self._lock:
            if self._conn is None:
                raise StateError(f"{_where(self.url)}: the state backend is closed")
            try:
                with self._conn.transaction():
                    yield self._conn
            except psycopg.Error as exc:
                raise StateError(f"{_where(self.url)}: state database error: "
                                 f"{' '.join(str(exc).split())}") from exc

    def close(self) -> None:
        """Close the connections (this process's writers are then no longer alive)."""
        with self._lock:
            for conn in (self._conn, self._presence):
                if conn is not None:
                    conn.close()
            self._conn = self._presence = None
            self._cache.clear()

    def __enter__(self) -> DatabaseBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ----------------------------------------------------------------------------------

    def create_run(self, doc: dict[str, Any]) -> None:
        """Store a new run; the same document again is a no-op, another one an error."""
        text = _dumps(doc)
        run_id = str(doc["id"])
        with self._tx() as conn:
            row = conn.execute("SELECT initial FROM state_runs WHERE id = %s",
                               (run_id,)).fetchone()
            if row is not None:
                if row[0] != text:
                    raise StateError(f"run {run_id} already exists with other content")
                return
            conn.execute("INSERT INTO state_runs (id, name, status, created_at, started_at,"
                         " ended_at, initial, snapshot, snapshot_cursor) VALUES"
                         " (%s,%s,%s,%s,%s,%s,%s,%s,0)",
                         (run_id, doc.get("name") or "", doc.get("status") or "Pending",
                          doc.get("created_at") or self._clock(), doc.get("started_at"),
                          doc.get("ended_at"), text, text))

    def resolve_run_id(self, ref: str) -> str:
        """The full id of the run whose id is `ref` or starts with it (unique, >= 4 chars)."""
        prefix = ref.strip().lower()
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM state_runs WHERE id = %s", (prefix,)).fetchone():
                return prefix
            check_prefix(prefix)
            rows = conn.execute("SELECT id FROM state_runs WHERE starts_with(id, %s) LIMIT 2",
                                (prefix,)).fetchall()
        return only_match(prefix, [str(r[0]) for r in rows])

    def load(self, run_id: str) -> dict[str, Any]:
        """The materialized document (a private copy); accepts a unique id prefix."""
        full = self.resolve_run_id(run_id)
        with self._tx() as conn:
            _, doc = self._refresh(conn, full)
            copy: dict[str, Any] = json.loads(_dumps(doc))
        return copy

    def _refresh(self, conn: Any, run_id: str) -> tuple[int, dict[str, Any]]:
        """The cached document brought up to the latest diff (inside a transaction)."""
        cursor, doc = self._cache.get(run_id, (-1, {}))
        if cursor < 0:
            row = conn.execute("SELECT snapshot, snapshot_cursor FROM state_runs WHERE id = %s",
                               (run_id,)).fetchone()
            if row is None:
                raise UnknownRun(f"unknown run id '{run_id}'")
            doc, cursor = json.loads(row[0]), int(row[1])
        rows = conn.execute("SELECT cursor, ops FROM state_diffs WHERE run_id = %s AND"
                            " cursor > %s ORDER BY cursor", (run_id, cursor)).fetchall()
        try:
            for at, ops in rows:
                apply_ops(doc, json.loads(ops))
                cursor = int(at)
        except PatchConflict as exc:
            self._cache.pop(run_id, None)
            raise StateError(f"stored history of run {run_id} does not fold ({exc})") from exc
        self._cache[run_id] = (cursor, doc)
        return cursor, doc

    def position(self, run_id: str, writer: str) -> tuple[int, int]:
        """(latest cursor of the run, last seq of `writer` in it)."""
        with self._tx() as conn:
            if not conn.execute("SELECT 1 FROM state_runs WHERE id = %s", (run_id,)).fetchone():
                raise UnknownRun(f"unknown run id '{run_id}'")
            row = conn.execute("SELECT MAX(cursor), MAX(seq) FILTER (WHERE writer = %s) FROM"
                               " state_diffs WHERE run_id = %s", (writer, run_id)).fetchone()
        return int(row[0] or 0), int(row[1] or 0)

    # -- diffs ---------------------------------------------------------------------------------

    def apply(self, diff: Diff) -> bool:
        """Apply `diff` atomically under the run's row lock; False for a duplicate, `SeqGap`
        for a gap, `PatchConflict` (nothing applied) when the operations do not apply."""
        ops_text = _dumps(diff.ops)
        try:
            with self._tx() as conn:
                row = conn.execute("SELECT snapshot_cursor FROM state_runs WHERE id = %s"
                                   " FOR UPDATE", (diff.run_id,)).fetchone()
                if row is None:
                    raise UnknownRun(f"unknown run id '{diff.run_id}'")
                last = conn.execute("SELECT MAX(seq) FROM state_diffs WHERE run_id = %s AND"
                                    " writer = %s", (diff.run_id, diff.writer)).fetchone()[0]
                last = int(last or 0)
                if 1 <= diff.seq <= last:
                    return False
                if diff.seq != last + 1:
                    raise SeqGap(writer=diff.writer, got=diff.seq, expected=last + 1)
                _, doc = self._refresh(conn, diff.run_id)
                apply_ops(doc, json.loads(ops_text))  # PatchConflict: rolled back, cache dropped
                cursor = int(conn.execute(
                    "INSERT INTO state_diffs (run_id, writer, seq, ops, ts, lease) VALUES"
                    " (%s,%s,%s,%s,%s,%s) RETURNING cursor",
                    (diff.run_id, diff.writer, diff.seq, ops_text, diff.ts or self._clock(),
                     diff.lease)).fetchone()[0])
                self._cache[diff.run_id] = (cursor, doc)
                conn.execute("UPDATE state_runs SET name = %s, status = %s, started_at = %s,"
                             " ended_at = %s WHERE id = %s",
                             (doc.get("name") or "", doc.get("status") or "Pending",
                              doc.get("started_at"), doc.get("ended_at"), diff.run_id))
                if diff.seq % SNAPSHOT_EVERY == 0 or doc.get("ended_at"):
                    conn.execute("UPDATE state_runs SET snapshot = %s, snapshot_cursor = %s"
                                 " WHERE id = %s", (_dumps(doc), cursor, diff.run_id))
                return True
        except BaseException:
            self._cache.pop(diff.run_id, None)  # the copy may hold the failed diff
            raise

    def changes_since(self, run_id: str, cursor: int) -> tuple[list[Diff], int]:
        """Diffs applied after `cursor` and the new cursor (how other processes' writes —
        other tasks, a cancel, a trigger — reach a running one)."""
        with self._tx() as conn:
            rows = conn.execute("SELECT cursor, writer, seq, ops, ts, lease FROM state_diffs"
                                " WHERE run_id = %s AND cursor > %s ORDER BY cursor",
                                (run_id, cursor)).fetchall()
            if not rows and not conn.execute("SELECT 1 FROM state_runs WHERE id = %s",
                                             (run_id,)).fetchone():
                raise UnknownRun(f"unknown run id '{run_id}'")
        diffs = [Diff(run_id=run_id, writer=w, seq=int(s), ops=json.loads(o), ts=t, lease=le,
                      meta={"cursor": int(c)}) for c, w, s, o, t, le in rows]
        return diffs, (int(rows[-1][0]) if rows else cursor)

    def history(self, run_id: str) -> list[Diff]:
        """Every diff of the run in the order applied."""
        return self.changes_since(run_id, 0)[0]

    def list_runs(self, limit: int = 20, status: str | None = None) -> list[RunSummary]:
        """Most recent runs first, optionally only those with `status`."""
        sql = "SELECT id, name, status, created_at, started_at, ended_at FROM state_runs"
        args: list[Any] = []
        if status:
            sql += " WHERE status = %s"
            args.append(status)
        with self._tx() as conn:
            rows = conn.execute(sql + " ORDER BY created_at DESC, seq DESC LIMIT %s",
                                (*args, max(0, limit))).fetchall()
        return [RunSummary(*r) for r in rows]

    # -- processes sharing runs ---------------------------------------------------------------

    def announce(self, writer: str) -> None:
        """Hold `writer`'s advisory lock until this backend closes: `alive(writer)` is True
        meanwhile for every process, and False once this one is gone (even by SIGKILL)."""
        with self._lock:
            if writer in self._announced:
                return
            if self._presence is None:
                self._presence = connect(self.url, autocommit=True)
            self._presence.execute("SELECT pg_advisory_lock(%s::int, hashtext(%s))",
                                   (LOCK_CLASS, writer))
            self._announced.add(writer)

    def alive(self, writer: str) -> bool:
        """Whether a live process holds `writer` (announced it and is still connected)."""
        with self._lock:
            if writer in self._announced:
                return True
        with self._tx() as conn:
            got = conn.execute("SELECT pg_try_advisory_xact_lock(%s::int, hashtext(%s))",
                               (LOCK_CLASS, writer)).fetchone()[0]
        return not got  # taken (and released at commit) only when nobody holds it

    # -- logs ----------------------------------------------------------------------------------

    def append_log(self, run_id: str, task_id: str, data: bytes) -> None:
        """Append raw output of a task (a row per chunk, at the task's length)."""
        if not data:
            return
        with self._tx() as conn:
            conn.execute("INSERT INTO state_logs (run_id, task_id, size) VALUES (%s, %s, 0)"
                         " ON CONFLICT (run_id, task_id) DO NOTHING", (run_id, task_id))
            size = int(conn.execute("SELECT size FROM state_logs WHERE run_id = %s AND"
                                    " task_id = %s FOR UPDATE", (run_id, task_id)).fetchone()[0])
            conn.execute("INSERT INTO state_log_chunks (run_id, task_id, start, data) VALUES"
                         " (%s, %s, %s, %s)", (run_id, task_id, size, data))
            conn.execute("UPDATE state_logs SET size = %s WHERE run_id = %s AND task_id = %s",
                         (size + len(data), run_id, task_id))

    def read_log(self, run_id: str, task_id: str, offset: int = 0) -> bytes:
        """A task's output from byte `offset` on."""
        with self._tx() as conn:
            rows = conn.execute("SELECT start, data FROM state_log_chunks WHERE run_id = %s AND"
                                " task_id = %s AND start + length(data) > %s ORDER BY start",
                                (run_id, task_id, offset)).fetchall()
        if not rows:
            return b""
        data = b"".join(bytes(r[1]) for r in rows)
        return data[max(0, offset - int(rows[0][0])):]


def _where(url: str) -> str:
    """The database's address without credentials."""
    from runner.state.database_schema import redacted

    return redacted(url)
