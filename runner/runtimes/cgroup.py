"""One cgroup (v2) per host task: every process a step starts stays in it, whatever it does.

A process cannot leave its cgroup without write access to another one, and `cgroup.kill`
kills a cgroup's whole subtree atomically (no fork escapes it), so a task's cgroup is an exact
and inescapable list of what the task runs. Ferry creates the task cgroups as children of its
own cgroup when it may: as root, or in a cgroup delegated to its user (systemd `Delegate=yes`,
a user session's own scope). No controller is enabled: the cgroup only groups the processes.

CPython cannot start a process inside a cgroup: the runner moves each step's main process into
the task's cgroup while the step waits, before it runs anything (`runner.runtimes.tracking`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import time
from pathlib import Path

_PROC = "/proc"


class CgroupError(OSError):
    """A cgroup operation failed (the message names the cgroup and the reason)."""


def _mount_point() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on hybrid
    systems), from this process's mount table; None without one."""
    try:
        with open(f"{_PROC}/self/mountinfo", "rb") as fh:
            table = fh.read().decode(errors="replace")
    except OSError:
        return None
    for line in table.splitlines():
        before, _, after = line.partition(" - ")
        fields = before.split()
        if after.split()[:1] == ["cgroup2"] and len(fields) > 4:
            return Path(fields[4].replace("\\040", " "))
    return None


def _own_path() -> str | None:
    """This process's cgroup v2 path ('0::/...' in /proc/self/cgroup)."""
    try:
        with open(f"{_PROC}/self/cgroup", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        return None
    return None


def own_cgroup() -> tuple[Path | None, str]:
    """This process's cgroup directory, or None and why there is none to use."""
    mount = _mount_point()
    if mount is None:
        return None, "no cgroup v2 hierarchy is mounted"
    own = _own_path()
    if own is None:
        return None, "this process has no cgroup v2 path"
    directory = mount / own.lstrip("/")
    if not (directory / "cgroup.procs").exists():
        return None, f"{directory} is not visible here"
    return directory, ""


class TaskCgroup:
    """A cgroup directory holding one task's processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._procs: int | None = None
        self._events: int | None = None

    @classmethod
    def create(cls, parent: Path, name: str) -> TaskCgroup:
        """Make `parent/name`; CgroupError when this process may not."""
        path = parent / name
        try:
            path.mkdir(mode=0o755)
        except OSError as exc:
            raise CgroupError(exc.errno, f"cannot create cgroup {path}: {exc.strerror}") from exc
        return cls(path)

    def add(self, pid: int) -> None:
        """Move process `pid` into this cgroup."""
        try:
            if self._procs is None:
                self._procs = os.open(self.path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
            os.write(self._procs, str(pid).encode())
        except ProcessLookupError:
            pass  # it is gone already: nothing of it to track
        except OSError as exc:
            raise CgroupError(exc.errno, f"cannot move process {pid} into cgroup {self.path}: "
                                         f"{exc.strerror}") from exc

    def populated(self) -> bool:
        """Some live (not zombie) process is in this cgroup or below it."""
        try:
            if self._events is None:
                self._events = os.open(self.path / "cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
            # Read at offset 0 the kernel regenerates the file: one descriptor per task.
            return b"populated 1" in os.pread(self._events, 128, 0)
        except FileNotFoundError:
            return False

    def pids(self) -> set[int]:
        """The processes in this cgroup and its descendants."""
        found: set[int] = set()
        for directory, _dirs, _files in os.walk(self.path):
            with contextlib.suppress(FileNotFoundError):
                found.update(int(p) for p in Path(directory, "cgroup.procs").read_text().split())
        return found

    def terminate(self, grace: float) -> set[int]:
        """SIGTERM every process, wait up to `grace` for the cgroup to empty, then kill what is
        left (`cgroup.kill`); returns the pids still there after that (none, normally)."""
        if not self.populated():
            return set()
        if grace > 0:
            self._signal_all(signal.SIGTERM)
            if self._wait_empty(grace):
                return set()
        self.kill()
        self._wait_empty(5.0)
        return self.pids() if self.populated() else set()

    def _signal_all(self, sig: int) -> None:
        """Send `sig` to every process while the cgroup is frozen, so that all of them have it
        pending before any runs again: a shell never sees its child die of it first (and says
        "Terminated"), and nothing forks past the signal."""
        frozen = self._freeze(True)
        try:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        finally:
            if frozen:
                self._freeze(False)

    def _freeze(self, on: bool) -> bool:
        """Freeze (or thaw) the cgroup (Linux >= 5.2), waiting up to a second for it to take
        effect; False when it cannot be frozen here."""
        try:
            (self.path / "cgroup.freeze").write_text("1" if on else "0")
        except OSError:
            return False
        deadline = time.monotonic() + 1.0
        want = b"frozen 1" if on else b"frozen 0"
        while time.monotonic() < deadline:
            try:
                if want in (self.path / "cgroup.events").read_bytes():
                    return True
            except OSError:
                return False
            time.sleep(0.001)
        return True

    def kill(self) -> None:
        """SIGKILL every process of the subtree at once (Linux >= 5.14), else one by one."""
        try:
            (self.path / "cgroup.kill").write_text("1")
            return
        except FileNotFoundError:
            if not self.path.exists():
                return
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise CgroupError(exc.errno, f"cannot kill cgroup {self.path}: "
                                             f"{exc.strerror}") from exc
        for _ in range(50):  # an older kernel: a fork may race a round, never fifty
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def _wait_empty(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.populated():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def remove(self) -> None:
        """Remove the (empty) cgroup and any child cgroup a step made inside it."""
        self.close()
        for directory, _dirs, _files in os.walk(self.path, topdown=False):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise CgroupError(exc.errno, f"cannot remove cgroup {directory}: "
                                             f"{exc.strerror}") from exc

    def close(self) -> None:
        """Release the descriptors kept open for the task's steps."""
        for fd in (self._procs, self._events):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._procs = self._events = None


_STALE = re.compile(r"^ferry-.+-(\d+)-[0-9a-f]{8}$")


def remove_stale(parent: Path) -> int:
    """Remove the empty task cgroups under `parent` whose creator (the pid in their name) is
    dead: a runner killed with SIGKILL cannot remove its own. A populated one is left alone:
    its processes are ended by whoever runs the task again (the task's ledger). How many went."""
    removed = 0
    try:
        names = os.listdir(parent)
    except OSError:
        return 0
    for name in names:
        match = _STALE.match(name)
        if match is None or _alive(int(match.group(1))):
            continue  # not ours, or its creator (or a process reusing its pid) runs
        try:
            os.rmdir(parent / name)  # fails (EBUSY) when populated or holding a child cgroup
            removed += 1
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    if not 0 < pid < 1 << 22:  # beyond any pid_max: a name that only looks like ours
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
