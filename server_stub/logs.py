"""Task logs: the store interface (`Logs`) and its embedded form, one append-only file per
(run, task) under `<data-dir>/logs/`, written by offset (`FileLogs`; with PostgreSQL the logs are
rows of the database, `server_stub.logrows`, so that every replica serves them).

An append at the stored length is written; a chunk overlapping what is stored must match it
(a resend) and only its new tail is written; anything else is refused with the stored length.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Protocol

from runner.api.protocol import RUN_ID_PATTERN, TASK_ID_PATTERN
from server_stub.errors import ApiError, bad_request
from server_stub.store.base import Conn

_RUN = re.compile(RUN_ID_PATTERN)
_TASK = re.compile(TASK_ID_PATTERN)


def check_run(run_id: str) -> str:
    """A run id (a UUID) safe to use as a directory name; 400 otherwise."""
    if not _RUN.fullmatch(run_id):
        raise bad_request(f"run id {run_id[:100]!r} is not a UUID", "bad_id")
    return run_id


def check_task(task: str) -> str:
    """A task id safe to use as a file name (it starts with a letter or digit, so it is never
    '.' or '..', and holds no '/'); 400 otherwise."""
    if not _TASK.fullmatch(task):
        raise bad_request(f"task id {task[:100]!r} is not valid (a letter or digit, then letters,"
                          " digits, '.', '_', '-'; at most 100)", "bad_id")
    return task


def mismatch(task: str, offset: int, size: int, gap: bool) -> ApiError:
    """409 `offset_mismatch` carrying the stored length."""
    why = "leaves a gap" if gap else "differs from the stored bytes"
    return ApiError(409, "offset_mismatch", f"task {task}: chunk at offset {offset} {why}; "
                    f"the server has {size} bytes", offset=size)


class Logs(Protocol):
    """Where task logs are kept; every call runs inside the caller's transaction `conn`."""

    def append(self, conn: Conn, run_id: str, task: str, offset: int, data: bytes) -> int:
        """Store `data` at `offset`; returns the new length (409 `offset_mismatch` otherwise)."""

    def read(self, conn: Conn, run_id: str, task: str, offset: int = 0) -> bytes:
        """The task's log from `offset` on (empty when none or past its end)."""

    def size(self, conn: Conn, run_id: str, task: str) -> int:
        """Bytes stored for the task."""

    def expired(self, conn: Conn, *, older_than: float, now: float
                ) -> list[tuple[str, str, int]]:
        """(run id, when it ended, bytes) of finished runs with logs older than `older_than`."""

    def remove(self, conn: Conn, run_id: str) -> list[str]:
        """Remove a run's logs; what could not be removed, one message each."""


class LogStore:
    """Log files of every run (`Logs`); appends are serialized by one lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def path(self, run_id: str, task: str) -> Path:
        """Where a task's log lives; both ids are checked here too, whatever the route did."""
        return self.root / check_run(run_id) / f"{check_task(task)}.log"

    def size(self, conn: Conn | None, run_id: str, task: str) -> int:
        """Bytes stored for the task."""
        try:
            return self.path(run_id, task).stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, conn: Conn | None, run_id: str, task: str, offset: int,
               data: bytes) -> int:
        """Store `data` at `offset`; returns the new length. 409 `offset_mismatch` otherwise."""
        with self._lock:
            path = self.path(run_id, task)
            size = self.size(conn, run_id, task)
            end = offset + len(data)
            if offset > size:
                raise mismatch(task, offset, size, gap=True)
            if offset < size:
                overlap = min(end, size) - offset
                with path.open("rb") as fh:
                    fh.seek(offset)
                    stored = fh.read(overlap)
                if stored != data[:overlap]:
                    raise mismatch(task, offset, size, gap=False)
                data = data[overlap:]
            if data:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
            return max(size, end)

    def read(self, conn: Conn | None, run_id: str, task: str, offset: int = 0) -> bytes:
        """The task's log from `offset` on (empty when there is none yet or `offset` is past its
        end: a seek far past it fails with EINVAL or overflows)."""
        try:
            with self.path(run_id, task).open("rb") as fh:
                if offset >= os.fstat(fh.fileno()).st_size:
                    return b""
                fh.seek(offset)
                return fh.read()
        except FileNotFoundError:
            return b""

    def expired(self, conn: Conn, *, older_than: float, now: float
                ) -> list[tuple[str, str, int]]:
        """Finished runs whose log directory is older than `older_than`."""
        from server_stub.maintenance import expired_logs

        return expired_logs(conn, self.root, older_than=older_than, now=now)

    def remove(self, conn: Conn | None, run_id: str) -> list[str]:
        """Remove `logs/<run>/`."""
        from server_stub.maintenance import remove_logs

        return remove_logs(self.root, run_id)
