"""How a host task's processes are tracked: by the task's own cgroup where Ferry may create one,
else by each step's session, process group and marker (`runner.runtimes.proctree`).

`TaskProcesses` is what `DirectTask` asks: the command that starts a step inside the task's
cgroup, recording a step started without one, whether a step that exited left anything running,
ending a step's processes, and at the end of the task ending whatever is left. The cgroup, or
each step without one, is written to the task's ledger (`runner.runtimes.ledger`) before
anything runs in it, so that a later process can end it if this one dies.

A step waits before it runs anything until it is tracked: its stdin is a pipe ("the gate"), and
`sh -e -c SCRIPT` (how the engine runs a step's `run` text) becomes `sh -e -c 'read -r _ || exit
125; exec </dev/null; SCRIPT'` (one line: the shell's line numbers do not change); any other
argv is started through `sh -c 'read -r _ || exit 125; exec "$@" </dev/null' ferry-step ARGV`
(one more `exec` of the shell). Once the runner has moved the step's main process into the
task's cgroup (or written the step to the ledger) it writes a newline into the gate and the step
goes on, with /dev/null as its stdin as before. A move made after the step started would race
its first forks (the first cgroup migration after an idle moment waits ~10 ms for an RCU grace
period here, while the step runs on), and the step cannot move itself when it runs as another
user than the runner (`runner.step_user`): only the runner may write its own cgroup. If the
runner dies before opening the gate, the step reads end-of-file and exits 125 without running.
"""

from __future__ import annotations

import enum
import errno
import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from runner.errors import RuntimeUnavailable
from runner.runtimes.cgroup import CgroupError, TaskCgroup, own_cgroup, remove_stale
from runner.runtimes.ledger import Ledger
from runner.runtimes.proctree import ProcessFinder, TreeKiller

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_SHELL = ["/bin/sh", "-e", "-c"]
_WAIT = "read -r _ || exit 125"
_TRAMPOLINE = ("/bin/sh", "-c", f'{_WAIT}; exec "$@" </dev/null', "ferry-step")


class Tracking(enum.StrEnum):
    """Which process tracking a host runtime uses (`runner.process_tracking`)."""

    AUTO = "auto"
    """A cgroup per task where this process may create one, else sessions and markers."""
    CGROUP = "cgroup"
    """A cgroup per task, or host tasks fail with the reason there is none."""
    SESSION = "session"
    """Sessions and markers only."""


class CgroupHome:
    """Where this process makes task cgroups (its own cgroup), decided once, on first use."""

    def __init__(self, mode: Tracking) -> None:
        self.mode = mode
        self._lock = threading.Lock()
        self._decided = False
        self._parent: Path | None = None
        self._why = "process tracking is set to 'session'"

    def parent(self) -> Path | None:
        """The directory task cgroups go under; None: track by session. In `cgroup` mode,
        RuntimeUnavailable says why there is no cgroup to use."""
        with self._lock:
            if not self._decided:
                self._decided = True
                if self.mode != Tracking.SESSION:
                    self._parent, self._why = _probe()
                    if self._parent is not None:
                        remove_stale(self._parent)
        if self._parent is None and self.mode == Tracking.CGROUP:
            raise RuntimeUnavailable(f"process tracking 'cgroup' is required but {self._why}")
        return self._parent

    def describe(self) -> str:
        """One phrase for logs: which tracking is in use and where, or why not cgroups."""
        try:
            parent = self.parent()
        except RuntimeUnavailable as exc:
            return str(exc)
        if parent is not None:
            return f"a cgroup per task under {parent}"
        return f"sessions and markers ({self._why})"


def _probe() -> tuple[Path | None, str]:
    """This process's cgroup if it may create children there and move processes into them."""
    own, why = own_cgroup()
    if own is None:
        return None, why
    if not os.access(own / "cgroup.procs", os.W_OK):
        return None, f"{own} is not writable (run as root or under systemd with Delegate=yes)"
    try:
        TaskCgroup.create(own, f"ferry-probe-{os.getpid()}-{os.urandom(3).hex()}").remove()
    except (CgroupError, OSError) as exc:
        return None, str(exc)
    return own, ""


class TaskProcesses:
    """One open host task's processes: its cgroup, or its steps found by session and marker."""

    def __init__(self, home: CgroupHome, finder: ProcessFinder, ledger: Ledger | None,
                 task_id: str) -> None:
        self._finder = finder
        self._required = home.mode == Tracking.CGROUP
        self.ledger = ledger
        self.cgroup: TaskCgroup | None = None
        parent = home.parent()
        if parent is not None:
            # The creator's pid in the name: an empty cgroup of a dead creator is removed by the
            # next Ferry process that tracks steps here (`remove_stale`).
            name = (_UNSAFE.sub("-", f"ferry-{task_id}"[:96])
                    + f"-{os.getpid()}-{os.urandom(4).hex()}")
            try:
                self.cgroup = TaskCgroup.create(parent, name)
            except CgroupError as exc:
                if home.mode == Tracking.CGROUP:
                    raise RuntimeUnavailable(str(exc)) from exc
            else:
                # On disk before any process enters it: a later process finds it by this line.
                if ledger is not None:
                    ledger.record(cgroup=str(self.cgroup.path))

    def gate(self) -> tuple[int, int] | None:
        """A pipe for the next step's stdin (read end, write end), or None when nothing needs
        the step to wait (no cgroup and no ledger)."""
        if self.cgroup is None and self.ledger is None:
            return None
        return os.pipe2(os.O_CLOEXEC)

    def command(self, argv: Sequence[str]) -> Sequence[str]:
        """The argv that makes `argv` wait at the gate first (itself when there is none). A
        program that cannot be run raises OSError here, as `spawn` would, not in the shell."""
        if self.cgroup is None and self.ledger is None:
            return argv
        if len(argv) == 4 and list(argv[:3]) == _SHELL:
            return [*_SHELL, f"{_WAIT}; exec </dev/null; {argv[3]}"]
        program = argv[0] if argv else ""
        if "/" in program and not os.access(program, os.X_OK):
            code = errno.EACCES if os.path.exists(program) else errno.ENOENT
            raise OSError(code, os.strerror(code), program)
        return [*_TRAMPOLINE, *argv]

    def adopt(self, pid: int, marker: str, at: float, gate: int | None) -> None:
        """A step started (`at`: boottime just before) and waits at the gate: move it into the
        task's cgroup (else write it to the ledger), then open the gate (closing it)."""
        try:
            if self.cgroup is not None:
                try:
                    self.cgroup.add(pid)
                except CgroupError as exc:
                    if self._required:
                        raise RuntimeUnavailable(str(exc)) from exc
                    # e.g. the cgroup was removed under us: sessions from here on
                    self.cgroup.close()
                    self.cgroup = None
            if self.cgroup is None and self.ledger is not None:
                self.ledger.record(step=marker, pid=pid, at=round(at, 3))
            if gate is not None:
                os.write(gate, b"\n")
        finally:
            if gate is not None:
                os.close(gate)

    def leftovers(self, pid: int, marker: str, since: float) -> bool:
        """After the step's main process exited (reaped or not): is anything of it running?"""
        if self.cgroup is not None:
            return self.cgroup.populated()
        return bool(self._killer(pid, marker, since).leftovers())

    def end_step(self, pid: int, marker: str, since: float, grace: float,
                 reap_root: Callable[[], object] | None = None) -> None:
        """SIGTERM the step's processes, wait up to `grace`, SIGKILL what is left."""
        if self.cgroup is not None:
            self.cgroup.terminate(grace)
            if reap_root is not None:
                reap_root()
            return
        self._killer(pid, marker, since).terminate(grace, reap_root=reap_root)

    def _killer(self, pid: int, marker: str, since: float) -> TreeKiller:
        return TreeKiller(self._finder, marker=marker, pgid=pid, root_pid=pid, since=since)

    def close(self, grace: float) -> None:
        """The task ended: kill what is left in its cgroup and remove it; drop the ledger
        (kept when something could not be ended, for the next attempt to try again)."""
        keep = False
        if self.cgroup is not None:
            try:
                keep = bool(self.cgroup.terminate(grace))
                if not keep:
                    self.cgroup.remove()
            except CgroupError:
                keep = True
            self.cgroup.close()
        if self.ledger is not None:
            self.ledger.close(keep=keep)
