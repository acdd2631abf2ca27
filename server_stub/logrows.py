"""Task logs as rows of the database (`logs.Logs` on PostgreSQL): every replica serves every
log, and the offset rules hold across replicas because each append locks the task's `logs` row
and writes its chunk in the same transaction (`log_chunks` keyed by start offset).
"""

from __future__ import annotations

from datetime import datetime

from server_stub.logs import check_run, check_task, mismatch
from server_stub.store.base import Conn

_FINISHED = ("Completed", "Failed", "Canceled")


def _stored(conn: Conn, run_id: str, task: str, start: int, end: int) -> bytes:
    """The stored bytes of [start, end)."""
    out = bytearray()
    first: int | None = None
    for row in conn.execute("SELECT start, data FROM log_chunks WHERE run_id = ? AND task = ?"
                            " AND start < ? AND start + length(data) > ? ORDER BY start",
                            (run_id, task, end, start)):
        if first is None:
            first = int(row["start"])
        out += bytes(row["data"])
    if first is None:
        return b""
    return bytes(out[start - first:end - first])


class RowLogs:
    """Logs in the `logs` and `log_chunks` tables."""

    def append(self, conn: Conn, run_id: str, task: str, offset: int, data: bytes) -> int:
        """Store `data` at `offset`; returns the new length (409 `offset_mismatch` otherwise)."""
        check_run(run_id)
        check_task(task)
        conn.execute("INSERT INTO logs (run_id, task, size) VALUES (?, ?, 0)"
                     " ON CONFLICT (run_id, task) DO NOTHING", (run_id, task))
        row = conn.execute("SELECT size FROM logs WHERE run_id = ? AND task = ?"
                           + conn.dialect.lock, (run_id, task)).fetchone()
        size = int(row["size"])
        end = offset + len(data)
        if offset > size:
            raise mismatch(task, offset, size, gap=True)
        if offset < size:
            overlap = min(end, size) - offset
            if _stored(conn, run_id, task, offset, offset + overlap) != data[:overlap]:
                raise mismatch(task, offset, size, gap=False)
            data = data[overlap:]
        if data:
            conn.execute("INSERT INTO log_chunks (run_id, task, start, data) VALUES (?,?,?,?)",
                         (run_id, task, size, data))
            conn.execute("UPDATE logs SET size = ? WHERE run_id = ? AND task = ?",
                         (size + len(data), run_id, task))
        return max(size, end)

    def read(self, conn: Conn, run_id: str, task: str, offset: int = 0) -> bytes:
        """The task's log from `offset` on."""
        check_run(run_id)
        check_task(task)
        row = conn.execute("SELECT size FROM logs WHERE run_id = ? AND task = ?",
                           (run_id, task)).fetchone()
        if row is None or offset >= int(row["size"]):
            return b""
        return _stored(conn, run_id, task, offset, int(row["size"]))

    def size(self, conn: Conn, run_id: str, task: str) -> int:
        """Bytes stored for the task."""
        row = conn.execute("SELECT size FROM logs WHERE run_id = ? AND task = ?",
                           (check_run(run_id), check_task(task))).fetchone()
        return 0 if row is None else int(row["size"])

    def expired(self, conn: Conn, *, older_than: float, now: float
                ) -> list[tuple[str, str, int]]:
        """Finished runs with logs that ended more than `older_than` seconds before `now`."""
        found = []
        for row in conn.execute(
                "SELECT r.id, COALESCE(r.ended_at, r.created_at) AS ended, SUM(l.size) AS size"
                " FROM runs r JOIN logs l ON l.run_id = r.id WHERE r.status IN (?, ?, ?)"
                " AND r.queue IN ('done', 'external') GROUP BY r.id, r.ended_at, r.created_at"
                " ORDER BY MIN(r.seq)", _FINISHED).fetchall():
            try:
                ended = datetime.fromisoformat(str(row["ended"]).replace("Z", "+00:00"))
            except ValueError:  # no readable end time: kept (pruning only removes what it can date)
                continue
            if now - ended.timestamp() >= older_than:
                found.append((str(row["id"]), str(row["ended"]), int(row["size"] or 0)))
        return found

    def remove(self, conn: Conn, run_id: str) -> list[str]:
        """Delete the run's logs (its chunks go with them)."""
        conn.execute("DELETE FROM logs WHERE run_id = ?", (run_id,))
        return []
