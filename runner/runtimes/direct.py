"""The host runtime: each step is a subprocess in its own session, killed as a whole tree.

Output (stdout and stderr through one pipe, so in the order the step wrote it) reaches the sink
chunk by chunk as it arrives. The wait wakes on the step's exit (pidfd), on output, and at least
every 50 ms to notice a cancel. When the step ends, for whatever reason, nothing it started
survives: a task's processes are tracked by its cgroup, or by session and marker where Ferry may
not create cgroups (`runner.runtimes.tracking`). The search for leftovers is skipped when the
kernel says no process at all was created after the step's main process (checked before that
process is reaped, so its pid cannot have been reused): a step that forked nothing left nothing.

What a task starts is written to its ledger as it starts (`runner.runtimes.ledger`); `open`
ends whatever an earlier attempt of the task recorded before the task runs again.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from runner.errors import RuntimeUnavailable
from runner.runtimes.base import OutputSink, StepResult, StepSpec, TaskSpec
from runner.runtimes.ledger import Ledger, boottime, end_earlier_attempt
from runner.runtimes.proctree import MARKER_VAR, ProcessFinder, nothing_started_since
from runner.runtimes.spawn import BadEnvironment, Child, Credentials, env_block, spawn
from runner.runtimes.tracking import CgroupHome, TaskProcesses, Tracking

_CANCEL_POLL = 0.05
"""Longest time between two looks at the cancel event."""
_DRAIN_SECONDS = 2.0
"""How long to keep reading output after the step's processes are gone (or unkillable)."""
_READ_SIZE = 65536
_MARKER_KEY = MARKER_VAR.encode()


def _spawn_failure(argv0: str, exc: OSError, sink: OutputSink) -> StepResult:
    """A step whose program cannot be started fails like the shell says: 127 missing, 126 else."""
    code = 127 if exc.errno == errno.ENOENT else 126
    where = f" ({exc.filename})" if exc.filename not in (None, argv0) else ""
    sink(f"ferry: cannot run {argv0}: {exc.strerror or exc}{where}\n".encode())
    return StepResult(exit_code=code)


class DirectTask:
    """An open task on the host: steps run in the workspace, one subprocess tree each."""

    def __init__(self, spec: TaskSpec, base_env: Mapping[str, str], grace_seconds: float,
                 procs: TaskProcesses, fast_spawn: bool = True,
                 creds: Credentials | None = None) -> None:
        self._spec = spec
        self.notes: list[str] = []
        self._creds = creds
        self._cwd = str(host_workdir(spec))
        self._fast = fast_spawn
        # Encoded once per task; `_env` adds each step's variables (see runtimes.spawn).
        self._env_base = {os.fsencode(k): os.fsencode(v)
                          for k, v in {**base_env, **spec.env}.items()}
        self._grace = grace_seconds
        self._procs = procs
        self._devnull: int | None = None
        self._block: list[bytes] | None = None
        # A step's marker: 128 random bits drawn once per task, and the step's count.
        self._mark_prefix = os.urandom(16).hex()
        self._steps = 0

    def path_for(self, host_path: Path) -> str:
        """On the host a step sees host paths as they are."""
        return str(host_path)

    def _env(self, step: StepSpec, marker: str) -> list[bytes]:
        """The step's environment block: the task's (encoded once per task) plus the step's
        variables and marker; a step variable that overrides a task one rebuilds it whole."""
        extra = {os.fsencode(k): os.fsencode(v) for k, v in step.env.items()}
        extra[_MARKER_KEY] = marker.encode()
        if not extra.keys().isdisjoint(self._env_base):
            return env_block({**self._env_base, **extra})
        if self._block is None:
            self._block = env_block(self._env_base)
        return self._block + env_block(extra)

    def _stdin(self) -> int:
        """/dev/null for the steps' stdin, opened once per task rather than once per step."""
        if self._devnull is None:
            self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return self._devnull

    def run_step(self, step: StepSpec, sink: OutputSink, cancel: threading.Event) -> StepResult:
        """Run one step to its end; on timeout or cancel terminate its whole process tree."""
        self._steps += 1
        marker = f"{self._mark_prefix}-{self._steps}"
        started = time.monotonic()
        at = boottime()
        procs = self._procs
        # A bare pipe, not stdout=PIPE: the reads are os.read anyway, and Popen's file object
        # costs an fstat, an ioctl and an lseek per step.
        pipe, writer = os.pipe2(os.O_CLOEXEC)
        # The step waits on its stdin until it is tracked (`runtimes.tracking`).
        gate = procs.gate()
        try:
            proc = spawn(procs.command(step.argv), self._cwd, self._env(step, marker),
                         gate[0] if gate else self._stdin(), writer, fast=self._fast,
                         creds=self._creds)
        except BaseException as exc:
            os.close(pipe)
            if gate:
                os.close(gate[1])
            if isinstance(exc, BadEnvironment):
                sink(f"ferry: {exc}\n".encode())
                return StepResult(exit_code=None, reason=str(exc))
            if isinstance(exc, OSError):
                return _spawn_failure(str(step.argv[0]) if step.argv else "''", exc, sink)
            raise
        finally:
            os.close(writer)
            if gate:
                os.close(gate[0])
        pidfd = None
        try:
            procs.adopt(proc.pid, marker, at, gate[1] if gate else None)
            pidfd = _pidfd(proc.pid)
            reason, eof = self._wait(proc, pipe, pidfd, sink, cancel, step.timeout, started)
            if reason is not None:
                procs.end_step(proc.pid, marker, started, self._grace, reap_root=proc.poll)
            else:  # exited, not reaped yet
                quiet = nothing_started_since(proc.pid)
                proc.wait()
                if not quiet and procs.leftovers(proc.pid, marker, started):
                    procs.end_step(proc.pid, marker, started, self._grace)
                    eof = False
            if not eof:
                _drain(pipe, sink)
            if proc.returncode is None:
                proc.wait()
        finally:
            if proc.returncode is None:  # the sink raised: still leave nothing behind
                procs.end_step(proc.pid, marker, started, 0.0, reap_root=proc.poll)
                proc.wait()
            if pidfd is not None:
                os.close(pidfd)
            os.close(pipe)
        code = proc.wait()  # reaped above: no system call
        return StepResult(
            exit_code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
            reason=reason,
            duration=time.monotonic() - started,
        )

    @staticmethod
    def _wait(proc: Child, pipe: int, pidfd: int | None, sink: OutputSink,
              cancel: threading.Event, timeout: float | None, started: float,
              ) -> tuple[str | None, bool]:
        """Stream output until the main process exits (left unreaped); 'timeout'/'canceled' if
        cut short; and whether the pipe reached its end (no writer is left)."""
        deadline = started + timeout if timeout is not None else None
        pipe_open = True
        while True:
            if cancel.is_set():
                return "canceled", not pipe_open
            wait = _CANCEL_POLL
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "timeout", not pipe_open
                wait = min(wait, remaining)
            watch = ([pipe] if pipe_open else []) + ([pidfd] if pidfd is not None else [])
            if watch:
                ready, _, _ = select.select(watch, [], [], wait)
                if pipe_open and pipe in ready:
                    data = os.read(pipe, _READ_SIZE)
                    if data:
                        sink(data)
                    else:
                        pipe_open = False
                if pidfd is not None:
                    if pidfd in ready:
                        return None, not pipe_open
                    continue
            else:
                cancel.wait(min(wait, 0.005))
            if _exited(proc.pid):
                return None, not pipe_open

    def close(self) -> None:
        """End what is left of the task (each step already did), drop its cgroup and ledger,
        release its /dev/null."""
        self._procs.close(self._grace)
        if self._devnull is not None:
            os.close(self._devnull)
            self._devnull = None


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits (Linux >= 5.3), else None."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def _exited(pid: int) -> bool:
    """The process has exited; it stays a zombie (WNOWAIT) until Popen reaps it."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _drain(pipe: int, sink: OutputSink) -> None:
    """Read what is left in the pipe until EOF, bounded in case a writer could not be killed."""
    deadline = time.monotonic() + _DRAIN_SECONDS
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        ready, _, _ = select.select([pipe], [], [], remaining)
        if not ready:
            return
        data = os.read(pipe, _READ_SIZE)
        if not data:
            return
        sink(data)


def host_workdir(spec: TaskSpec) -> Path:
    """The steps' directory on the host: `runtime.working_dir` (relative: inside the workspace),
    else the workspace."""
    working_dir = spec.options.working_dir
    if not working_dir:
        return spec.workspace
    path = Path(working_dir)
    return path if path.is_absolute() else spec.workspace / path


class DirectRuntime:
    """Runs steps directly on the host, with `base_env` (the allowed part of the runner's
    environment: `runner.runtimes.stepenv`), as `creds` when given (a root runner's step
    user)."""

    name = "direct"

    def __init__(self, base_env: Mapping[str, str], grace_seconds: float = 5.0, *,
                 fast_spawn: bool = True, creds: Credentials | None = None,
                 tracking: Tracking = Tracking.AUTO) -> None:
        self._base_env = dict(base_env)
        self._creds = creds
        self._grace = grace_seconds
        self._finder = ProcessFinder()
        self._fast_spawn = fast_spawn
        """False: always start steps through `subprocess.Popen` (see `runtimes.spawn`)."""
        self.cgroups = CgroupHome(tracking)

    def open(self, spec: TaskSpec) -> DirectTask:
        """End what an earlier attempt of the task left running (its ledger), check the
        workspace exists, and return a handle for the task's steps."""
        notes = end_earlier_attempt(spec.ledger, self._grace) if spec.ledger is not None else []
        if not spec.workspace.is_dir():
            raise RuntimeUnavailable(f"workspace {spec.workspace} is not a directory")
        workdir = host_workdir(spec)
        if not workdir.is_dir():
            raise RuntimeUnavailable(f"node '{spec.node_id}' runtime.working_dir: {workdir} is "
                                     "not a directory")
        ledger = Ledger(spec.ledger, self.name) if spec.ledger is not None else None
        try:
            procs = TaskProcesses(self.cgroups, self._finder, ledger, spec.task_id)
        except BaseException:
            if ledger is not None:
                ledger.close()
            raise
        task = DirectTask(spec, self._base_env, self._grace, procs, self._fast_spawn,
                          self._creds)
        task.notes = notes
        return task

    def reap(self, active_run_ids: set[str]) -> int:
        """Host steps leave nothing behind once they return: nothing to reap."""
        return 0
