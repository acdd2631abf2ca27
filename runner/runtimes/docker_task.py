"""One task's container: steps run in it with `exec`, output streamed live, trees killed on stop.

Each step is `exec`ed through `/bin/sh -c 'exec 2>&1; exec "$@"'` so stdout and stderr share one
pipe inside the container and arrive in the order they were written (the engine copies two
separate pipes otherwise, and may reorder them). The exec'd process is a session leader; when the
engine runs on this machine (its pids are visible in our /proc and carry the step's marker) the
step's process tree is terminated from the host exactly as for host steps. With a remote engine
the container itself is stopped, which ends the task.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.runtimes.base import Mount, OutputSink, StepResult, StepSpec
from runner.runtimes.ledger import Ledger
from runner.runtimes.proctree import MARKER_VAR, ProcessFinder, TreeKiller

WORKSPACE_MOUNT = "/workspace"
CONTROL_MOUNT = "/ferry"
STEP_WRAPPER = ("/bin/sh", "-c", 'exec 2>&1; exec "$@"', "ferry-step")
"""Merges stderr into stdout inside the container, then becomes the step's own argv."""

_CANCEL_POLL = 0.05
_PROBE_EVERY = 0.5
"""How often a long step's exec is inspected: its main process may have exited while a
leftover background process keeps the output stream open."""
_END = object()
_QUEUE_CHUNKS = 64
"""Chunks (the engine sends at most 32 KiB each) held between the exec's stream and the sink:
bounded, so that a slow sink (a journal that fsyncs) slows the step down through the engine's
own flow control instead of filling the runner's memory."""


def one_line(exc: BaseException) -> str:
    """The first line of an engine error, without the SDK's request noise."""
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ContainerTask:
    """An open container task: `run_step` execs into it, `close` removes it."""

    def __init__(self, api: Any, container_id: str, *, workspace: Path, control_dir: Path,
                 grace_seconds: float, finder: ProcessFinder, chown_to: str | None,
                 engine_name: str, env: Mapping[str, str] | None = None,
                 ledger: Ledger | None = None,
                 mounts: Sequence[Mount] = (), workdir: str = WORKSPACE_MOUNT) -> None:
        self._api = api
        self.notes: list[str] = []
        self._env = dict(env or {})
        """The task's variables, given to every exec (never to the container's config)."""
        self.container_id = container_id
        self._workspace = workspace
        self._control = control_dir
        self._grace = grace_seconds
        self._finder = finder
        self._chown_to = chown_to
        self._engine = engine_name
        self._ledger = ledger
        self._mounts = tuple(mounts)
        self._workdir = workdir
        self._closed = False
        self._broken: str | None = None
        self._lock = threading.Lock()

    def path_for(self, host_path: Path) -> str:
        """Host paths under the workspace, the control dir or a read-only mount, as the
        container sees them."""
        roots = [(self._workspace, WORKSPACE_MOUNT), (self._control, CONTROL_MOUNT),
                 *((m.source, m.target) for m in self._mounts)]
        for root, mount in roots:
            try:
                rel = host_path.relative_to(root)
            except ValueError:
                continue
            return mount if str(rel) == "." else f"{mount}/{rel.as_posix()}"
        raise ValueError(f"{host_path} is neither under the workspace, the control dir nor a "
                         "mount")

    def run_step(self, step: StepSpec, sink: OutputSink, cancel: threading.Event) -> StepResult:
        """Exec one step; on timeout or cancel terminate its processes (SIGTERM, grace, KILL)."""
        if self._closed or self._broken:
            return StepResult(exit_code=None, reason=self._broken or "task container is closed")
        marker = uuid.uuid4().hex
        started = time.monotonic()
        env = {**self._env, **step.env, MARKER_VAR: marker}
        try:
            exec_id = self._api.exec_create(
                self.container_id, [*STEP_WRAPPER, *step.argv], stdout=True, stderr=True,
                tty=False, environment=[f"{k}={v}" for k, v in env.items()],
                workdir=self._workdir)["Id"]
            stream = self._api.exec_start(exec_id, stream=True, demux=False)
        except Exception as exc:
            return StepResult(exit_code=None, reason=f"{self._engine} exec failed: "
                                                     f"{one_line(exc)}")
        chunks: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        done = threading.Event()
        pump = threading.Thread(target=_pump, args=(stream, chunks, done), daemon=True,
                                name=f"ferry-exec-{exec_id[:12]}")
        pump.start()
        try:
            reason = self._wait(exec_id, marker, started, chunks, sink, cancel, step.timeout)
            if reason is not None:
                self._terminate(exec_id, marker, started)
                _drain(chunks, sink, self._grace + 2.0)
        finally:
            done.set()  # the pump stops waiting for room in the queue
        info = self._finished(exec_id)
        if reason is None and info is not None:
            self._reap_leftovers(info, marker, started)
        code = info.get("ExitCode") if info else None
        return StepResult(exit_code=code if isinstance(code, int) else None, reason=reason,
                          duration=time.monotonic() - started)

    def _wait(self, exec_id: str, marker: str, started: float, chunks: queue.Queue[object],
              sink: OutputSink, cancel: threading.Event, timeout: float | None) -> str | None:
        deadline = started + timeout if timeout is not None else None
        next_probe = started + _PROBE_EVERY
        while True:
            if cancel.is_set():
                return "canceled"
            wait = _CANCEL_POLL
            now = time.monotonic()
            if deadline is not None:
                if now >= deadline:
                    return "timeout"
                wait = min(wait, deadline - now)
            try:
                item = chunks.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is _END:
                return None
            if isinstance(item, bytes):
                sink(item)
            if time.monotonic() >= next_probe:
                next_probe = time.monotonic() + _PROBE_EVERY
                info = self._inspect(exec_id)
                if info is not None and not info.get("Running"):
                    # The step is over; what still holds the stream open is a leftover.
                    self._kill_tree(info, marker, started)

    def _inspect(self, exec_id: str) -> dict[str, Any] | None:
        try:
            return dict(self._api.exec_inspect(exec_id))
        except Exception:
            return None

    def _finished(self, exec_id: str) -> dict[str, Any] | None:
        """The exec's final inspect, waiting briefly for the engine to record the exit."""
        deadline = time.monotonic() + 5.0
        while True:
            info = self._inspect(exec_id)
            if info is None or not info.get("Running") or time.monotonic() > deadline:
                return info
            time.sleep(0.01)

    def _kill_tree(self, info: Mapping[str, Any], marker: str, started: float) -> bool:
        """Terminate the exec's tree from the host; False if its pids are not visible here."""
        pid = info.get("Pid")
        if not isinstance(pid, int) or pid <= 0 or not _carries(pid, marker):
            return False
        TreeKiller(self._finder, marker=marker, pgid=pid, root_pid=pid,
                   since=started).terminate(self._grace)
        return True

    def _reap_leftovers(self, info: Mapping[str, Any], marker: str, started: float) -> None:
        """After a normal exit, end what the step left running (as on the host)."""
        pid = info.get("Pid")
        if not isinstance(pid, int) or pid <= 0:
            return
        killer = TreeKiller(self._finder, marker=marker, pgid=pid, root_pid=pid, since=started)
        if killer.alive():
            killer.terminate(self._grace)

    def _terminate(self, exec_id: str, marker: str, started: float) -> None:
        info = self._inspect(exec_id)
        if info is None or not info.get("Running"):
            return
        if not self._kill_tree(info, marker, started):
            # A remote engine: stop the whole container; the task cannot go on after this.
            self._broken = "task container was stopped to end a step"
            with contextlib.suppress(Exception):
                self._api.stop(self.container_id, timeout=max(1, int(self._grace)))

    def close(self) -> None:
        """Hand workspace files back to the host user if needed, then remove the container."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._chown_to is not None and not self._broken:
            with contextlib.suppress(Exception):
                exec_id = self._api.exec_create(
                    self.container_id, ["chown", "-R", self._chown_to, WORKSPACE_MOUNT],
                    user="0:0")["Id"]
                self._api.exec_start(exec_id)
        removed = True
        try:
            self._api.remove_container(self.container_id, force=True, v=True)
        except Exception as exc:
            removed = getattr(getattr(exc, "response", None), "status_code", None) == 404
        if self._ledger is not None:
            # Kept when the container may still exist: the task's next attempt removes it.
            self._ledger.close(keep=not removed)


def _carries(pid: int, marker: str) -> bool:
    """The host process `pid` is the step we started (so the engine shares our pid view)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return f"{MARKER_VAR}={marker}".encode() in handle.read()
    except OSError:
        return False


def _pump(stream: Any, chunks: queue.Queue[object], done: threading.Event) -> None:
    """Move the exec's output into the queue (the blocking read lives on its own thread),
    waiting for room while the step is running; gives up once `done` is set."""
    try:
        for chunk in stream:
            if chunk and not _put(chunks, bytes(chunk), done):
                break
    except Exception:
        pass
    finally:
        _put(chunks, _END, done)
        if done.is_set():
            with contextlib.suppress(Exception):
                stream.close()


def _put(chunks: queue.Queue[object], item: object, done: threading.Event) -> bool:
    """Put `item` once there is room; False when the step ended first (nobody reads)."""
    while not done.is_set():
        try:
            chunks.put(item, timeout=_CANCEL_POLL)
            return True
        except queue.Full:
            continue
    return False


def _drain(chunks: queue.Queue[object], sink: OutputSink, bound: float) -> None:
    """Pass on what is left in the queue until the stream ends or `bound` seconds pass."""
    deadline = time.monotonic() + bound
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            item = chunks.get(timeout=remaining)
        except queue.Empty:
            return
        if item is _END:
            return
        if isinstance(item, bytes):
            sink(item)


def host_user() -> str:
    """`uid:gid` of the process running Ferry."""
    return f"{os.getuid()}:{os.getgid()}"
