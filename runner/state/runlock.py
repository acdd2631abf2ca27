"""Which process executes a run: an advisory `flock` on `locks/<run_id>.lock`.

The kernel drops the lock when its holder dies, even by SIGKILL, so "locked" means "a live
process is executing this run" and "unlocked" means "nobody is": `ferry cancel` uses it to decide
between asking the executing process to stop and canceling the run itself, and `ferry resume`
to refuse executing a run twice at once.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from runner.paths import ensure_dir, safe_segment


class RunLock:
    """An exclusive, non-blocking, crash-released lock on one run."""

    def __init__(self, locks_dir: Path, run_id: str) -> None:
        self.path = Path(locks_dir) / f"{safe_segment(run_id, 'run id')}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if no live process holds it; True on success. Idempotent."""
        if self._fd is not None:
            return True
        ensure_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        """Drop the lock (the file stays; it is reused). Idempotent."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def holder_pid(self) -> int | None:
        """The pid written by the last holder (meaningful only while it is locked)."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def is_locked(self) -> bool:
        """Whether some process (this one included) holds the lock right now."""
        if self._fd is not None:
            return True
        if self.acquire():
            self.release()
            return False
        return True

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def wait_for_lock(lock: RunLock, stop: threading.Event, timeout: float = 120.0) -> bool:
    """Take `lock`, waiting while someone holds it briefly (a prune removing the run's old
    files); False when `timeout` passed or `stop` was set first."""
    deadline = time.monotonic() + timeout
    while not lock.acquire():
        if stop.is_set() or time.monotonic() >= deadline:
            return False
        stop.wait(0.05)
    return True
