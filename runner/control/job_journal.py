"""A run job's own journal writes: taking the run over (after a replay pass that still owns an
earlier attempt's journal) and ending it Failed when the engine cannot run it."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.diff import Diff
from runner.document import RunStatus, TaskStatus, run_field_op, task_field_op, utc_now
from runner.state.api import ApiBackend
from runner.state.journal import JournalBusy

ADOPT_WAIT = 30.0  # seconds a claim waits for a replay pass owning the run's old journal


def adopt(backend: ApiBackend, doc: dict[str, Any], lease: str, offsets: Mapping[str, int],
          stop: threading.Event) -> Path | None:
    """`backend.adopt`, waiting a little (stoppable) for a replay pass that is delivering an
    earlier attempt's journal of the same run."""
    deadline = time.monotonic() + ADOPT_WAIT
    while True:
        try:
            return backend.adopt(doc, lease=lease, log_offsets=offsets)
        except JournalBusy:
            if time.monotonic() >= deadline:
                raise
            stop.wait(0.2)


def fail_run(backend: ApiBackend, run_id: str, writer: str, error: str,
             task: str | None = None) -> None:
    """Journal the run's end as Failed with `error` (its first line); a task job's task
    (its lease writes only its task: the server's planning then fails the run)."""
    first = error.splitlines()[0] if error else "failed"
    if task:
        ops = [task_field_op(task, "status", TaskStatus.FAILED.value),
               task_field_op(task, "error", first), task_field_op(task, "ended_at", utc_now())]
    else:
        ops = [run_field_op("status", RunStatus.FAILED.value), run_field_op("error", first),
               run_field_op("ended_at", utc_now())]
    _, last = backend.position(run_id, writer)
    backend.apply(Diff(run_id=run_id, writer=writer, seq=last + 1, ops=ops))
