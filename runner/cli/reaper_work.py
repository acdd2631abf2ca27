"""What the reaper (`runner.cli.reaper`) does once its runner has ended: end every task the
runner's own ledgers record, all at once (one thread per task: their grace periods overlap),
and say what it did, one line per task, where the runner's lines go.

Only ledgers whose header names the runner (pid, start time, this boot) are read: a ledger of
another live runner of the same home is never touched, and a task's next attempt writes its
own header before it starts anything.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.paths import ledger_files
from runner.runtimes.ledger import Ended, Recorded, describe, end_processes, read

LOG_NAME = "reaper.log"
"""In the data dir: where the reaper's lines go when the runner's stderr is gone."""


@dataclass
class TaskEnd:
    """What ending one task of the dead runner did."""

    ledger: Path
    ended: Ended
    containers: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        """The task id (the ledger's name)."""
        return self.ledger.name.removesuffix(".procs")

    @property
    def run(self) -> str:
        """The run id (the ledger's run directory)."""
        return self.ledger.parent.parent.name


class _Engines:
    """Container engine clients, made on first use, as the runner made them."""

    def __init__(self, podman_socket: str | None, xdg_runtime_dir: str | None) -> None:
        self._podman_socket = podman_socket
        self._xdg_runtime_dir = xdg_runtime_dir
        self._lock = threading.Lock()
        self._apis: dict[str, Any] = {}

    def api(self, engine: str) -> Any:
        """The engine's low-level API client; RuntimeUnavailable when it cannot be reached."""
        from runner.runtimes.factory import RuntimeSettings, container_runtime

        with self._lock:
            if engine not in self._apis:
                runtime = container_runtime(engine, RuntimeSettings(
                    podman_socket=self._podman_socket, xdg_runtime_dir=self._xdg_runtime_dir))
                if runtime is None:
                    raise ValueError(f"unknown container engine {engine!r}")
                self._apis[engine] = runtime.client().api
            return self._apis[engine]


def owned(paths: list[Path], owner: int, owner_start: int) -> list[Recorded]:
    """The ledgers `owner` (pid and start time, this boot) wrote."""
    found = []
    for path in paths:
        rec = read(path)
        if rec is not None and rec.this_boot and rec.owner == owner \
                and rec.owner_start == owner_start:
            found.append(rec)
    return found


def end_task(rec: Recorded, grace: float, engines: _Engines) -> TaskEnd:
    """Remove the task's containers (`rm -f`: what runs in them dies), end its processes, and
    drop its ledger once nothing of it runs (unless another attempt took it over meanwhile)."""
    result = TaskEnd(rec.path, Ended(rec.path))
    for engine, name in rec.containers:
        try:
            engines.api(engine).remove_container(name, force=True, v=True)
            result.containers.append(name)
        except Exception as exc:
            if getattr(getattr(exc, "response", None), "status_code", None) == 404:
                continue  # never created, or already removed
            text = str(exc).strip().splitlines()
            result.ended.problems.append(f"the {engine} container {name} cannot be removed: "
                                         f"{text[0] if text else type(exc).__name__}")
    ended = end_processes(rec, grace)
    result.ended.stopped += ended.stopped
    result.ended.survivors |= ended.survivors
    result.ended.problems += ended.problems
    if result.ended.clean:
        again = read(rec.path)
        if again is not None and (again.owner, again.owner_start) == (rec.owner,
                                                                      rec.owner_start):
            with contextlib.suppress(FileNotFoundError):
                rec.path.unlink()
    return result


class Reporter:
    """One line per task, where the runner's lines went: its stderr (`ferry: ...`, or the
    daemon's log format); `<data>/reaper.log` when that stream is gone."""

    def __init__(self, log_format: str, data_dir: Path) -> None:
        self._format = log_format
        self._fallback = data_dir / LOG_NAME

    def line(self, level: str, text: str, **values: object) -> None:
        """Write one line (`level`: info or error)."""
        if self._format == "cli":
            out = f"ferry: {'error: ' if level == 'error' else ''}{text}"
        else:
            from runner.control.logs import JsonFormatter, TextFormatter

            record = logging.LogRecord("ferry.reaper", getattr(logging, level.upper()),
                                       __file__, 0, text, None, None)
            record.ferry_fields = values
            formatter = JsonFormatter() if self._format == "json" else TextFormatter()
            out = formatter.format(record)
        try:
            sys.stderr.write(out + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            with open(self._fallback, "a", encoding="utf-8") as fh:
                fh.write(out + "\n")


def report(done: TaskEnd, owner: int, say: Reporter) -> None:
    """The task's line: what was ended, or what could not be."""
    where = f"ferry process {owner} died while running task {done.task} (run {done.run})"
    values: dict[str, object] = {"run": done.run, "task": done.task, "runner_pid": owner}
    if not done.ended.clean:
        say.line("error", f"{where}; what it left running could not be ended: "
                 f"{describe(done.ended)}; the task will not run again on this host until it "
                 "is gone", event="reaper_failed", **values)
        return
    parts = []
    if done.ended.stopped:
        count = done.ended.stopped
        parts.append(f"ended the {count} process{'es' if count != 1 else ''} it left running")
    if done.containers:
        parts.append(f"removed its container{'s' if len(done.containers) != 1 else ''} "
                     + ", ".join(done.containers))
    if parts:
        say.line("info", f"{where}; {' and '.join(parts)}", event="reaper_stopped",
                 processes=done.ended.stopped, containers=len(done.containers), **values)


def reap(work_dir: Path, owner: int, owner_start: int, *, grace: float, log_format: str,
         podman_socket: str | None = None, xdg_runtime_dir: str | None = None) -> int:
    """End what `owner` left running under `work_dir`: 0 when nothing is left, 1 when
    something could not be ended (each said)."""
    say = Reporter(log_format, work_dir.parent)
    try:
        records = owned(ledger_files(work_dir), owner, owner_start)
    except OSError as exc:
        say.line("error", f"the ferry process {owner} is gone; its task ledgers under "
                 f"{work_dir} cannot be read: {exc}", event="reaper_failed")
        return 1
    if not records:
        return 0
    engines = _Engines(podman_socket, xdg_runtime_dir)
    with ThreadPoolExecutor(max_workers=min(32, len(records))) as pool:
        done = list(pool.map(lambda rec: end_task(rec, grace, engines), records))
    for item in done:
        report(item, owner, say)
    return 0 if all(item.ended.clean for item in done) else 1

