"""A task attempt's ledger: what it started on this host, written down as it starts.

A runner killed with SIGKILL leaves its steps running (re-parented to init), and with them the
only knowledge of what they are. The ledger (`<work>/<run>/tasks/<task>.procs`, mode 0600, one
JSON object per line) keeps that knowledge on disk, so that any later process can end them
before the task runs again: the next attempt's `Runtime.open`, `ferry resume`/`cancel` of the
run, and `ferry daemon` at start (`sweep`). Lines:

    {"v": 1, "runtime": "direct", "owner": PID, "owner_start": TICKS, "boot": BOOT_ID}
    {"cgroup": "/sys/fs/cgroup/.../ferry-<task>-<random>"}       the task's cgroup
    {"step": MARKER, "pid": PID, "at": SECONDS}                     a step, without a cgroup
    {"container": NAME, "engine": "docker"}                          the task's container

`at` is CLOCK_BOOTTIME just before the step started: the step's main process must have started
then (a pid reused later started later), and everything of the step started after it. Records
of another boot are void (processes and cgroups do not survive a reboot); a ledger whose owner
is alive belongs to a live runner and is left alone by `sweep` (never by the task's next
attempt: the task is ours then).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import RuntimeUnavailable
from runner.runtimes.cgroup import CgroupError, TaskCgroup
from runner.runtimes.proctree import all_processes, marker_of, stat_of, with_descendants

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_SLACK = 0.05
"""Seconds of clock-tick rounding allowed when comparing a process's start with `at`."""


def boottime() -> float:
    """Seconds since boot (CLOCK_BOOTTIME: the clock of /proc/<pid>/stat start times)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@functools.cache
def boot_id() -> str:
    """This boot's random id (a pid or cgroup from another boot means nothing)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@functools.cache
def _own_start() -> int:
    info = stat_of(os.getpid())
    return info.start if info is not None else 0


class Ledger:
    """The write side, held by one open task: records are appended as things start."""

    def __init__(self, path: Path, runtime: str) -> None:
        self.path = path
        self._fd: int | None = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.record(v=1, runtime=runtime, owner=os.getpid(), owner_start=_own_start(),
                    boot=boot_id())

    def record(self, **entry: Any) -> None:
        """Append one line (one write: a kill leaves whole lines; no fsync: a process crash,
        not a power loss, is what leaves steps running)."""
        if self._fd is not None:
            os.write(self._fd, json.dumps(entry, separators=(",", ":")).encode() + b"\n")

    def close(self, *, keep: bool = False) -> None:
        """Stop recording; remove the file unless `keep` (something may still be running)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not keep:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


@dataclass(frozen=True)
class StepRecord:
    """A step started without a cgroup: its marker, main process and start."""

    marker: str
    pid: int
    at: float


@dataclass
class Recorded:
    """A ledger as read back."""

    path: Path
    runtime: str = ""
    owner: int = 0
    owner_start: int = 0
    boot: str = ""
    cgroups: list[str] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    containers: list[tuple[str, str]] = field(default_factory=list)
    damaged: int = 0
    """Lines that could not be read (a torn last line after a crash is one)."""

    @property
    def this_boot(self) -> bool:
        """Its pids and cgroups are of this boot (else they are long gone)."""
        return bool(self.boot) and self.boot == boot_id()

    def owner_alive(self) -> bool:
        """The process that wrote it still runs (same pid, same start time, same boot)."""
        if not self.this_boot or self.owner <= 0:
            return False
        info = stat_of(self.owner)
        return info is not None and info.live and info.start == self.owner_start


def read(path: Path) -> Recorded | None:
    """The ledger at `path`; None when there is none."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    rec = Recorded(path)
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
            if "v" in entry:
                rec.runtime = str(entry.get("runtime", ""))
                rec.owner = int(entry.get("owner", 0))
                rec.owner_start = int(entry.get("owner_start", 0))
                rec.boot = str(entry.get("boot", ""))
            elif "cgroup" in entry:
                rec.cgroups.append(str(entry["cgroup"]))
            elif "step" in entry:
                rec.steps.append(StepRecord(str(entry["step"]), int(entry["pid"]),
                                            float(entry["at"])))
            elif "container" in entry:
                rec.containers.append((str(entry.get("engine", "")), str(entry["container"])))
            else:
                rec.damaged += 1
        except (ValueError, TypeError, KeyError, AttributeError):
            rec.damaged += 1
    return rec


def _recorded_processes(steps: list[StepRecord]) -> set[int]:
    """Live processes of recorded steps: the main process (if its start matches), the
    members of its session or process group, the processes carrying a step's marker, and
    everything below them; only processes that started after their step did."""
    procs = all_processes()

    def after(step: StepRecord) -> int:
        return int((step.at - _SLACK) * _TICK)

    sessions: dict[int, StepRecord] = {}
    for step in steps:
        root = procs.get(step.pid)
        # A pid is not handed out again while any process uses it as its session or group
        # id: the members of a step's session are the step's, unless its main process's pid
        # now names a process that started later (then the step's session is empty).
        if root is None or after(step) <= root.start <= int((step.at + 2.0) * _TICK):
            sessions[step.pid] = step
    markers = {step.marker: step for step in steps}
    earliest = min(after(step) for step in steps)
    found: set[int] = set()
    parents: dict[int, int] = {}
    for pid, info in procs.items():
        if info.start < earliest:
            continue
        parents[pid] = info.ppid
        owner = sessions.get(pid) or sessions.get(info.sid) or sessions.get(info.pgid)
        if owner is None:
            owner = markers.get(marker_of(pid) or "")
        if owner is not None and info.start >= after(owner):
            found.add(pid)
    return with_descendants(found, parents)


@dataclass
class Ended:
    """What ending a ledger's processes did."""

    path: Path
    stopped: int = 0
    """Processes found running (and signalled)."""
    survivors: set[int] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Nothing recorded is left running."""
        return not self.survivors and not self.problems


def _end_steps(steps: list[StepRecord], grace: float, result: Ended) -> None:
    """SIGTERM the recorded steps' processes, wait up to `grace`, SIGKILL the rest; counts
    them in `result`, with the pids still alive after that."""
    if not steps:
        return
    pids = _recorded_processes(steps)
    seen = set(pids)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not pids:
            break
        deadline = time.monotonic() + wait
        while True:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            time.sleep(0.02)
            pids = _recorded_processes(steps)
            seen |= pids
            if not pids or time.monotonic() >= deadline:
                break
    result.stopped += len(seen)
    result.survivors |= pids


def end_processes(rec: Recorded, grace: float) -> Ended:
    """End every process the ledger records (its cgroups, its steps); remove the cgroups."""
    result = Ended(rec.path)
    if not rec.this_boot:
        return result
    for path in rec.cgroups:
        cgroup = TaskCgroup(Path(path))
        if not cgroup.path.is_dir():
            continue
        try:
            result.stopped += len(cgroup.pids())
            result.survivors |= cgroup.terminate(grace)
            if not cgroup.populated():
                cgroup.remove()
        except (CgroupError, OSError) as exc:
            result.problems.append(str(exc))
    _end_steps(rec.steps, grace, result)
    return result


def describe(ended: Ended) -> str:
    """One line: what could not be ended."""
    parts = [f"processes {', '.join(map(str, sorted(ended.survivors)))} survived SIGKILL"
             ] if ended.survivors else []
    return "; ".join(parts + ended.problems)


def end_earlier_attempt(path: Path, grace: float) -> list[str]:
    """End every process an earlier attempt of this task recorded in its ledger at `path`
    (SIGTERM, `grace`, SIGKILL); RuntimeUnavailable when one survives: the task must not run
    while an earlier attempt of it still runs. Returns what it did, one line each, for the
    task's log (nothing when the earlier attempt left nothing running)."""
    recorded = read(path)
    if recorded is None:
        return []
    ended = end_processes(recorded, grace)
    if not ended.clean:
        raise RuntimeUnavailable("processes of an earlier attempt of this task are still "
                                 f"running and cannot be stopped: {describe(ended)}")
    path.unlink(missing_ok=True)
    if not ended.stopped:
        return []
    plural = "es" if ended.stopped != 1 else ""
    return [f"ended {ended.stopped} process{plural} an earlier attempt of this task left "
            "running, before running it again"]


def sweep(paths: Iterable[Path], grace: float) -> list[Ended]:
    """End what the ledgers of dead owners record (a runner killed mid-task); remove each such
    ledger once nothing of it runs, unless it names a container (the container runtime's reap
    and the task's next attempt remove those). Ledgers of live owners are skipped."""
    results = []
    for path in sorted(paths):
        rec = read(path)
        if rec is None or rec.owner_alive():
            continue
        ended = end_processes(rec, grace)
        if ended.clean and not rec.containers:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        results.append(ended)
    return results
