"""Task logs: one append-only file per (run, task) under `<data-dir>/logs/`, written by offset.

An append at the file's length is written; a chunk overlapping what is stored must match it
(a resend) and only its new tail is written; anything else is refused with the stored length.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from server_stub.errors import ApiError, bad_request

_TASK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_task(task: str) -> str:
    """A task id safe to use as a file name; 400 otherwise."""
    if not _TASK.match(task) or ".." in task:
        raise bad_request(f"task id '{task[:100]}' is not valid (letters, digits, '.', '_', '-')")
    return task


class LogStore:
    """Log files of every run; appends are serialized by one lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def path(self, run_id: str, task: str) -> Path:
        """Where a task's log lives (run ids are checked by the caller: they come from the db)."""
        return self.root / run_id / f"{check_task(task)}.log"

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
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
            return max(size, end)

    def read(self, run_id: str, task: str, offset: int = 0) -> bytes:
        """The task's log from `offset` on (empty when there is none yet)."""
        try:
            with self.path(run_id, task).open("rb") as fh:
                fh.seek(offset)
                return fh.read()
        except FileNotFoundError:
            return b""
