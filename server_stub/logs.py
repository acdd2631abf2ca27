"""Task logs: one append-only file per (run, task) under `<data-dir>/logs/`, written by offset.

An append at the file's length is written; a chunk overlapping what is stored must match it
(a resend) and only its new tail is written; anything else is refused with the stored length.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from runner.api.protocol import RUN_ID_PATTERN, TASK_ID_PATTERN
from server_stub.errors import ApiError, bad_request

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


class LogStore:
    """Log files of every run; appends are serialized by one lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def path(self, run_id: str, task: str) -> Path:
        """Where a task's log lives; both ids are checked here too, whatever the route did."""
        return self.root / check_run(run_id) / f"{check_task(task)}.log"

    def size(self, run_id: str, task: str) -> int:
        """Bytes stored for the task."""
        try:
            return self.path(run_id, task).stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, run_id: str, task: str, offset: int, data: bytes) -> int:
        """Store `data` at `offset`; returns the new length. 409 `offset_mismatch` otherwise."""
        with self._lock:
            path = self.path(run_id, task)
            size = self.size(run_id, task)
            end = offset + len(data)
            if offset > size:
                raise ApiError(409, "offset_mismatch", f"task {task}: chunk at offset {offset} "
                               f"leaves a gap; the server has {size} bytes", offset=size)
            if offset < size:
                overlap = min(end, size) - offset
                with path.open("rb") as fh:
                    fh.seek(offset)
                    stored = fh.read(overlap)
                if stored != data[:overlap]:
                    raise ApiError(409, "offset_mismatch", f"task {task}: chunk at offset {offset}"
                                   f" differs from the stored bytes; the server has {size} bytes",
                                   offset=size)
                data = data[overlap:]
            if data:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
            return max(size, end)

    def read(self, run_id: str, task: str, offset: int = 0) -> bytes:
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
