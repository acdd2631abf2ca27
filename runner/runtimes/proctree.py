"""Find and terminate every process a host step left behind, whatever it did to escape.

This is how steps are tracked where Ferry cannot give a task its own cgroup
(`runner.runtimes.cgroup`). A step runs in its own session and process group and carries a
unique marker in its environment. Its leftovers are: the members of its session and process
group (background jobs), any process carrying the marker (the ones that called `setsid` or
double-forked and were re-parented to init), and every descendant of those (a child that called
`setsid` and cleared its environment, while its parent lives). Reading every process's
environment is the expensive part, so `ProcessFinder` remembers which pids it has already seen
and only reads the ones that appeared since the step started.

Cheaper still is knowing that nothing can be left: `nothing_started_since(pid)` is True when no
process or thread at all was created on the machine (in our pid namespace) after the step's
main process `pid`, which must still be unreaped. Then that process started nothing, and there
is nothing to look for.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import psutil

MARKER_VAR = "FERRY_STEP_MARK"
"""Environment variable carrying a step's unique marker; descendants inherit it."""

_PROC = "/proc"
_MARKER_KEY = f"{MARKER_VAR}=".encode()
_LOADAVG = f"{_PROC}/loadavg"


@functools.cache
def _last_pid_readable() -> bool:
    """/proc/loadavg is the kernel's (not a FUSE overlay such as lxcfs, whose last field might
    come from another pid namespace); checked once per process."""
    mounts = _read(f"{_PROC}/self/mountinfo")
    return mounts is not None and _last_pid() is not None and not any(
        len(fields) > 4 and fields[4] == _LOADAVG.encode()
        for fields in (line.split() for line in mounts.splitlines()))


@functools.cache
def _loadavg_fd() -> int | None:
    """/proc/loadavg opened once per process: `os.pread` at offset 0 regenerates its text, and
    opening the file anew after every step cost more than reading it (measured: ~7% of a
    `true` step's wall time, right after the step's exit)."""
    try:
        return os.open(_LOADAVG, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _last_pid() -> int | None:
    """The most recently allocated pid in our pid namespace (last field of /proc/loadavg)."""
    fd = _loadavg_fd()
    if fd is None:
        return None
    try:  # os-level calls: this runs after every step, the io layer would double its cost
        raw = os.pread(fd, 256, 0)
    except OSError:
        return None
    try:
        return int(raw.split()[-1])
    except (ValueError, IndexError):
        return None


def nothing_started_since(pid: int) -> bool:
    """True when `pid` is still the most recently allocated pid: no process or thread was
    created anywhere in our pid namespace after it. `pid` must not be reaped yet (a zombie is
    fine), so that the number cannot have been handed out again. False when unsure."""
    return _last_pid_readable() and _last_pid() == pid


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


class Stat(NamedTuple):
    """The fields of /proc/<pid>/stat that tell whose a process is."""

    state: str
    ppid: int
    pgid: int
    sid: int
    start: int
    """Start time in clock ticks since boot."""

    @property
    def live(self) -> bool:
        """Running or sleeping: neither a zombie nor dead."""
        return self.state not in ("Z", "X")


def stat_of(pid: int) -> Stat | None:
    """The process's `Stat`, None when it is gone."""
    raw = _read(f"{_PROC}/{pid}/stat")
    if raw is None:
        return None
    # comm may hold spaces and parentheses: the fields start after the last ')'.
    rest = raw[raw.rfind(b")") + 2:].split()
    if len(rest) < 20:
        return None
    return Stat(rest[0].decode(), int(rest[1]), int(rest[2]), int(rest[3]), int(rest[19]))


def carries(pid: int, marker: str) -> bool:
    """The process's environment holds the step marker `marker`."""
    needle = f"{MARKER_VAR}={marker}\0".encode()
    env = _read(f"{_PROC}/{pid}/environ")
    return env is not None and (env.startswith(needle) or b"\0" + needle in env)


def marker_of(pid: int) -> str | None:
    """The step marker in the process's environment, if any (None also when unreadable)."""
    env = _read(f"{_PROC}/{pid}/environ")
    if env is None:
        return None
    if env.startswith(_MARKER_KEY):
        at = len(_MARKER_KEY)
    else:
        found = env.find(b"\0" + _MARKER_KEY)
        if found < 0:
            return None
        at = found + 1 + len(_MARKER_KEY)
    end = env.find(b"\0", at)
    return env[at:end if end >= 0 else None].decode(errors="replace")


def with_descendants(found: set[int], parents: Mapping[int, int]) -> set[int]:
    """`found` plus every process below one of them (`parents`: pid -> parent pid)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out = set(found)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def all_processes() -> dict[int, Stat]:
    """Every live process but this one, by pid."""
    me = os.getpid()
    found: dict[int, Stat] = {}
    try:
        names = os.listdir(_PROC)
    except OSError:
        return found
    for name in names:
        if name.isdigit() and int(name) != me:
            info = stat_of(int(name))
            if info is not None and info.live:
                found[int(name)] = info
    return found


class ProcessFinder:
    """Lists live processes belonging to a step (marker or process group); thread-safe."""

    def __init__(self) -> None:
        self._first_seen: dict[int, float] = {}
        self._lock = threading.Lock()
        self._self = os.getpid()
        self._proc_ok = os.path.isdir(_PROC)

    def find(self, marker: str, pgid: int, since: float) -> set[int]:
        """Live (non-zombie) pids in the session or process group `pgid` (the step's main
        process leads both), or whose environment holds `marker`, and their descendants; among
        processes not already seen before `since` (a `time.monotonic()` value)."""
        if not self._proc_ok:
            return self._find_psutil(marker, pgid)
        now = time.monotonic()
        try:
            entries = os.listdir(_PROC)
        except OSError:
            return self._find_psutil(marker, pgid)
        pids = {int(name) for name in entries if name.isdigit()}
        with self._lock:
            for gone in set(self._first_seen) - pids:
                del self._first_seen[gone]
            fresh: list[int] = []
            for pid in pids:
                seen = self._first_seen.setdefault(pid, now)
                if seen >= since and pid != self._self:
                    fresh.append(pid)
        parents: dict[int, int] = {}
        found: set[int] = set()
        for pid in fresh:
            info = stat_of(pid)
            if info is None or not info.live:
                continue
            parents[pid] = info.ppid
            if pgid in (info.pgid, info.sid) or carries(pid, marker):
                found.add(pid)
        return with_descendants(found, parents)

    def _find_psutil(self, marker: str, pgid: int) -> set[int]:
        """Portable fallback (no /proc): every process, through psutil."""
        found: set[int] = set()
        for proc in psutil.process_iter():
            try:
                if proc.pid == self._self or proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if os.getpgid(proc.pid) == pgid or proc.environ().get(MARKER_VAR) == marker:
                    found.add(proc.pid)
            except (psutil.Error, OSError):
                continue
        return found


def _signal_all(pgid: int, pids: Iterable[int], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


class TreeKiller:
    """Terminates one step's processes: SIGTERM to all, a grace period, then SIGKILL."""

    def __init__(self, finder: ProcessFinder, *, marker: str, pgid: int, root_pid: int,
                 since: float) -> None:
        self._finder = finder
        self._marker = marker
        self._pgid = pgid
        self._root = root_pid
        self._since = since
        self._root_proc: psutil.Process | None = None
        self._root_pinned = False

    def alive(self) -> set[int]:
        """The step's processes still running (its main process included while unreaped)."""
        return self._root_descendants() | self._finder.find(self._marker, self._pgid, self._since)

    def leftovers(self) -> set[int]:
        """After the main process exited (reaped or not): what it left running. Its children
        were re-parented when it exited, so only the group and the marker can find them."""
        return self._finder.find(self._marker, self._pgid, self._since)

    def _root_descendants(self) -> set[int]:
        # The first call pins the main process's identity (pid + start time) while it is
        # unreaped, so a later call never walks the children of a process that reused its pid.
        if not self._root_pinned:
            self._root_pinned = True
            with contextlib.suppress(psutil.Error):
                self._root_proc = psutil.Process(self._root)
        if self._root_proc is None:
            return set()
        try:
            if not self._root_proc.is_running():
                return set()
            return {child.pid for child in self._root_proc.children(recursive=True)}
        except psutil.Error:
            return set()

    def terminate(self, grace: float, reap_root: Callable[[], object] | None = None) -> None:
        """SIGTERM everything, wait up to `grace` for it to go, SIGKILL what is left."""
        pids = self.alive() | {self._root}
        _signal_all(self._pgid, pids, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if reap_root is not None:
                reap_root()
            if not self.alive():
                return
            time.sleep(0.02)
        for _ in range(20):
            pids = self.alive()
            if reap_root is not None:
                reap_root()
            if not pids:
                return
            _signal_all(self._pgid, pids, signal.SIGKILL)
            time.sleep(0.01)
