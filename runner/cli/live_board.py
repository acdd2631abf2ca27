"""The state behind the live status footer of `ferry run`/`resume` on a terminal: task statuses
folded from engine events, rendered as a few footer lines. Pure: no I/O, the caller passes the
clock reading and the terminal width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.cli.render import format_duration
from runner.document import task_label
from runner.engine.events import Event, MatrixTasksCreated, RunStarted, TaskStatusChanged

SHOWN_STATUSES = ("Running", "Completed", "Failed", "AwaitingTrigger", "Blocked", "Pending")
"""Always shown in the footer, in this order (WontDo only when some task has it)."""

MAX_RUNNING_LINES = 8

_COLORS = {"Running": "36", "Completed": "32", "Failed": "31", "AwaitingTrigger": "35",
           "Blocked": "33"}


@dataclass
class _Task:
    label: str
    status: str
    since: float | None = None
    """Monotonic clock reading when it became Running (None otherwise)."""


class TaskBoard:
    """Task statuses of one run (matrix masters excluded: their status is derived)."""

    def __init__(self) -> None:
        self.tasks: dict[str, _Task] = {}
        self.started: float | None = None
        self._unplanned: set[str] = set()
        """Plain (non-matrix) nodes whose task the scheduler has not created yet: Pending."""

    def seed(self, doc: dict[str, Any], now: float) -> None:
        """Start from a stored run document (`resume`: tasks that ran before have no event)."""
        for node in (doc.get("workflow") or {}).get("nodes") or []:
            strategy = node.get("strategy") or {}
            if isinstance(node, dict) and node.get("id") and strategy.get("type") != "matrix":
                self._unplanned.add(str(node["id"]))
        for tid, task in (doc.get("tasks") or {}).items():
            self._unplanned.discard(str(task.get("node_id")))
            if task.get("master"):
                continue
            status = str(task.get("status", "Pending"))
            self.tasks[tid] = _Task(task_label(doc, task), status,
                                    now if status == "Running" else None)

    def update(self, event: Event, now: float) -> bool:
        """Fold one event in; True when the footer changed."""
        if isinstance(event, RunStarted):
            if self.started is None:
                self.started = now
            return True
        if isinstance(event, MatrixTasksCreated):
            for child in event.children:
                self.tasks.setdefault(child.task_id, _Task(child.label, child.status))
            return bool(event.children)
        if isinstance(event, TaskStatusChanged) and not event.master:
            self._unplanned.discard(event.node_id)
            task = self.tasks.setdefault(event.task_id, _Task(event.label, event.status))
            task.label = event.label or task.label
            if event.status != "Running":
                task.since = None
            elif task.status != "Running" or task.since is None:
                task.since = now
            task.status = event.status
            return True
        return False

    def counts(self) -> dict[str, int]:
        """Tasks per status."""
        counts: dict[str, int] = dict.fromkeys(SHOWN_STATUSES, 0)
        for task in self.tasks.values():
            counts[task.status] = counts.get(task.status, 0) + 1
        counts["Pending"] += len(self._unplanned)
        return counts

    def footer(self, now: float, width: int, *, color: bool, max_lines: int) -> list[str]:
        """The footer lines, each cut to `width - 1` visible columns (a line that wraps would
        break the erase arithmetic); empty before the run has tasks."""
        if not self.tasks:
            return []
        counts = self.counts()
        parts = [(f"{status} {counts[status]}", _COLORS.get(status) if counts[status] else None)
                 for status in SHOWN_STATUSES]
        parts += [(f"{status} {n}", None) for status, n in counts.items()
                  if status not in SHOWN_STATUSES and n]
        if self.started is not None:
            parts.append((format_duration(now - self.started), None))
        lines = [_join(parts, " | ", width - 1, color)]
        running = sorted((t for t in self.tasks.values() if t.status == "Running"),
                         key=lambda t: (now if t.since is None else t.since, t.label))
        room = max(0, max_lines - 1)
        shown = running if len(running) <= room else running[:max(0, room - 1)]
        for task in shown:
            since = now if task.since is None else task.since
            text = f"  > {task.label} ({format_duration(now - since)})"
            lines.append(_cut(text, width - 1))
        if len(shown) < len(running):
            lines.append(_cut(f"  ... and {len(running) - len(shown)} more running", width - 1))
        return lines


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:max(0, limit - 3)] + "..."


def _join(parts: list[tuple[str, str | None]], sep: str, limit: int, color: bool) -> str:
    """Join (text, SGR color) parts, cut to `limit` visible columns, colored when asked."""
    out: list[str] = []
    used = 0
    for i, (text, sgr) in enumerate(parts):
        piece = (sep if i else "") + text
        if used + len(piece) > limit:
            break
        used += len(piece)
        if color and sgr:
            out.append(f"{sep if i else ''}\x1b[{sgr}m{text}\x1b[0m")
        else:
            out.append(piece)
    return "".join(out)
