"""Printing engine events as a run goes: the seed's timestamped lines, task output prefixed with
its task, or JSON Lines with `--json`. Lines are flushed one by one so that a pipe (a test, `tee`,
a CI log) sees them as they happen.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from runner.cli.render import stamp
from runner.engine.events import (
    Event,
    MatrixTasksCreated,
    OutputLine,
    RunStarted,
    StepFinished,
    TaskRetrying,
    TaskStatusChanged,
    TaskTriggered,
)


def _matrix_title(matrix: dict[str, Any]) -> str:
    """`Team frontend` for {"team": "frontend"}, as the seed's matrix block writes it."""
    parts = []
    for key, value in matrix.items():
        text = value if isinstance(value, str) else json.dumps(value)
        parts.append(f"{key[:1].upper()}{key[1:]} {text}")
    return ", ".join(parts) or "Item"


def event_lines(event: Event) -> list[str]:
    """The plain-text lines of one event (possibly none)."""
    ts = stamp(event.ts)
    if isinstance(event, RunStarted):
        if event.resumed:
            return [f"{ts} Workflow resumed (ID: {event.run_id})"]
        return [f"{ts} Workflow started with ID: {event.run_id}"]
    if isinstance(event, TaskStatusChanged):
        return _status_lines(ts, event)
    if isinstance(event, MatrixTasksCreated):
        lines = [f"{ts} Created matrix tasks for {event.node_id}:"]
        if event.master_id:
            lines.append(f"  - Master task: {event.master_id}")
        lines += [f"  - {_matrix_title(c.matrix)}: {c.task_id} ({c.status})"
                  for c in event.children]
        return lines
    if isinstance(event, OutputLine):
        return [f"  [{event.label}] {event.line}"]
    if isinstance(event, StepFinished):
        if event.ok:
            return []
        return [f"{ts} Task {event.label} ({event.task_id}): step {event.index + 1} "
                f"'{event.name}' failed: {event.result}"]
    if isinstance(event, TaskRetrying):
        wait = f" in {event.backoff:g}s" if event.backoff else ""
        return [f"{ts} Task {event.label} ({event.task_id}): attempt {event.attempt}/"
                f"{event.attempts} failed ({event.error}); retrying{wait}"]
    if isinstance(event, TaskTriggered):
        return [f"{ts} Task {event.task_id} ({event.label}) triggered"]
    return []  # RunPaused / RunFinished: the command prints the closing block from the doc


def _status_lines(ts: str, event: TaskStatusChanged) -> list[str]:
    if event.previous is None and event.status == "Pending":
        return []  # creation; matrix children are listed by their own block
    if event.master and event.previous is None:
        return []
    name = f"{event.node_id} master" if event.master else event.label
    if event.interrupted:
        return [f"{ts} Task {name} ({event.task_id}): interrupted while Running "
                "(its runner stopped); running it again"]
    line = f"{ts} Task {name} ({event.task_id}): {event.status}"
    if event.error and event.status in {"Failed", "Blocked", "WontDo"}:
        line += f" ({event.error})"
    return [line]


class LinePrinter:
    """An `EventSink` printing plain lines (or JSON Lines) to a text stream."""

    def __init__(self, out: TextIO, *, json_lines: bool = False) -> None:
        self._out = out
        self._json = json_lines
        self.broken = False

    def emit(self, event: Event) -> None:
        """Print the event's lines; never raises (a closed pipe only stops the printing)."""
        if self._json:
            lines = [json.dumps(event.to_json(), ensure_ascii=False, default=str)]
        else:
            lines = event_lines(event)
        self.write(lines)

    def write(self, lines: list[str]) -> None:
        """Print lines and flush; a broken pipe silences the printer instead of failing."""
        if self.broken or not lines:
            return
        try:
            self._out.write("\n".join(lines) + "\n")
            self._out.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.broken = True
