"""Task log files: `<logs_dir>/<run_id>/<task_id>.log`, append-only, shared by every backend."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from runner.errors import NoSpace, StateError
from runner.paths import ensure_dir, log_file_under


class TaskLogs:
    """The log files of the tasks of every run under one directory."""

    def __init__(self, logs_dir: Path) -> None:
        self.logs_dir = logs_dir

    def path(self, run_id: str, task_id: str) -> Path:
        """The log file of one task (ids are checked to be single path segments)."""
        return log_file_under(self.logs_dir, run_id, task_id)

    def append(self, run_id: str, task_id: str, data: bytes) -> None:
        """Append raw output (written through, so `logs --follow` sees it at once)."""
        path = self.path(run_id, task_id)
        ensure_dir(path.parent)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "ab") as fh:
                fh.write(data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(path.parent, "cannot write the task log") from exc
            raise StateError(f"{path}: cannot write the task log: {exc.strerror}") from exc

    def read(self, run_id: str, task_id: str, offset: int = 0) -> bytes:
        """A task's output from byte `offset` on (empty if it has written nothing yet)."""
        path = self.path(run_id, task_id)
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, offset))
                return fh.read()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise StateError(f"{path}: cannot read the task log: {exc.strerror}") from exc
