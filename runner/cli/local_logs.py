"""`ferry logs -i RUN [-t TASK] [--follow]`: task output from the log files."""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

from runner.cli.backends import open_backend, resolve_task
from runner.cli.render import ordered_tasks
from runner.document import TERMINAL_RUN, RunStatus, task_label
from runner.paths import Paths
from runner.state.backend import StateBackend
from runner.state.runlock import RunLock

FOLLOW_POLL_SECONDS = 0.2


def _tasks_in_order(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for top, kids in ordered_tasks(doc):
        out += [t for t in [top, *kids] if not t.get("master")]
    return out


class _Tail:
    """Reads new bytes of one task's log and turns complete lines into prefixed text."""

    def __init__(self, backend: StateBackend, run_id: str, task: dict[str, Any],
                 prefix: str | None) -> None:
        self.backend, self.run_id, self.task_id = backend, run_id, task["id"]
        self.prefix = prefix
        self.offset = 0
        self.partial = b""

    def poll(self, final: bool = False) -> str:
        """New output; with a prefix only whole lines (the rest waits), unless `final`."""
        data = self.backend.read_log(self.run_id, self.task_id, self.offset)
        self.offset += len(data)
        if self.prefix is None:
            return data.decode("utf-8", "replace")
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        if final and self.partial:
            lines.append(self.partial)
            self.partial = b""
        return "".join(f"{self.prefix}{ln.decode('utf-8', 'replace')}\n" for ln in lines)


def show_logs(args: argparse.Namespace) -> int:
    """Print (and with --follow keep printing) the output of one task or of every task."""
    backend, paths = open_backend(args)
    try:
        run_id = backend.resolve_run_id(args.id)
        doc = backend.load(run_id)
        if args.task:
            tails = [_Tail(backend, run_id, resolve_task(doc, args.task), None)]
        else:
            tails = [_Tail(backend, run_id, t, f"[{task_label(doc, t)}] ")
                     for t in _tasks_in_order(doc)]
            sys.stdout.write("".join(f"[run] {w}\n" for w in doc.get("warnings") or []))
        _drain(tails, final=not args.follow)
        if args.follow:
            _follow(backend, paths, run_id, doc, tails, single=bool(args.task))
        return 0
    finally:
        backend.close()


def _drain(tails: list[_Tail], final: bool) -> None:
    for tail in tails:
        text = tail.poll(final)
        if text:
            sys.stdout.write(text)
    sys.stdout.flush()


def _follow(backend: StateBackend, paths: Paths, run_id: str, doc: dict[str, Any],
            tails: list[_Tail], single: bool) -> None:
    """Keep printing until the run is no longer executing (ended, paused, or its process
    gone), then print what is left."""
    lock = RunLock(paths.data_dir / "locks", run_id)
    known = {t.task_id for t in tails}
    wake = threading.Event()
    while True:
        doc = backend.load(run_id)
        if not single:
            for task in _tasks_in_order(doc):
                if task["id"] not in known:  # matrix children appear while the run goes
                    known.add(task["id"])
                    tails.append(_Tail(backend, run_id, task, f"[{task_label(doc, task)}] "))
        stopped = (doc["status"] in TERMINAL_RUN
                   or doc["status"] == RunStatus.AWAITING_TRIGGER.value
                   or not lock.is_locked())
        _drain(tails, final=stopped)
        if stopped:
            return
        wake.wait(FOLLOW_POLL_SECONDS)

