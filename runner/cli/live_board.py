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

SHOWN_STATUSES = ("Running", "Completed", "Failed", "AwaitingTrigger", "Blocked", "Queued",
                  "Pending")
"""Always shown in the footer, in this order (WontDo and Canceled only when some task has
them). Queued: ready to run, waiting for a free slot (`--max-parallel`); Pending: waiting for
its dependencies."""

MAX_RUNNING_LINES = 8

_COLORS = {"Running": "36", "Completed": "32", "Failed": "31", "AwaitingTrigger": "35",
           "Blocked": "33", "Canceled": "33"}


@dataclass
class _Task:
    label: str
    status: str
    node: str = ""
    since: float | None = None
    """Monotonic clock reading when it became Running (None otherwise)."""


class TaskBoard:
    """Task statuses of one run (matrix masters excluded: their status is derived)."""

    def __init__(self) -> None:
        self.tasks: dict[str, _Task] = {}
        self.started: float | None = None
        self._unplanned: set[str] = set()
        """Plain (non-matrix) nodes whose task the scheduler has not created yet: Pending."""
        self._deps: dict[str, list[str]] = {}
        self._matrix: set[str] = set()
        self._masters: dict[str, str] = {}
        """A matrix node's master status (its children are Completed: the node is done)."""

    def seed(self, doc: dict[str, Any], now: float) -> None:
        """Start from a stored run document (`resume`: tasks that ran before have no event)."""
        for node in (doc.get("workflow") or {}).get("nodes") or []:
            if not isinstance(node, dict) or not node.get("id"):
                continue
            node_id = str(node["id"])
            self._deps[node_id] = [str(d) for d in node.get("depends_on") or []]
            if (node.get("strategy") or {}).get("type") == "matrix":
                self._matrix.add(node_id)
            else:
                self._unplanned.add(node_id)
        for tid, task in (doc.get("tasks") or {}).items():
            node_id = str(task.get("node_id"))
            self._unplanned.discard(node_id)
            status = str(task.get("status", "Pending"))
            if task.get("master"):
                self._masters[node_id] = status
                continue
            if task.get("canceled") and status == "Failed":
                status = "Canceled"
            self.tasks[tid] = _Task(task_label(doc, task), status, node_id,
                                    now if status == "Running" else None)

    def update(self, event: Event, now: float) -> bool:
        """Fold one event in; True when the footer changed."""
        if isinstance(event, RunStarted):
            if self.started is None:
                self.started = now
            return True
        if isinstance(event, MatrixTasksCreated):
            for child in event.children:
                self.tasks.setdefault(child.task_id,
                                      _Task(child.label, child.status, event.node_id))
            return bool(event.children)
        if isinstance(event, TaskStatusChanged):
            self._unplanned.discard(event.node_id)
            if event.master:
                self._masters[event.node_id] = event.status
                return True  # dependents of the node may be ready now
            status = "Canceled" if event.canceled else event.status
            task = self.tasks.setdefault(event.task_id,
                                         _Task(event.label, status, event.node_id))
            task.label = event.label or task.label
            task.node = event.node_id or task.node
            if status != "Running":
                task.since = None
            elif task.status != "Running" or task.since is None:
                task.since = now
            task.status = status
            return True
        return False

    def _node_done(self, node_id: str) -> bool:
        if node_id in self._matrix:
            return self._masters.get(node_id) == "Completed"
        if node_id in self._unplanned:
            return False
        mine = [t for t in self.tasks.values() if t.node == node_id]
        return bool(mine) and all(t.status == "Completed" for t in mine)

    def counts(self) -> dict[str, int]:
        """Tasks per status; a Pending task whose dependencies are all done is Queued (it
        waits for a free slot, not for other tasks)."""
        counts: dict[str, int] = dict.fromkeys(SHOWN_STATUSES, 0)
        done: dict[str, bool] = {}

        def ready(node: str) -> bool:
            return all(done.setdefault(dep, self._node_done(dep))
                       for dep in self._deps.get(node, []))

        for task in self.tasks.values():
            status = task.status
            if status == "Pending":
                status = "Queued" if ready(task.node) else "Pending"
            counts[status] = counts.get(status, 0) + 1
        for node in self._unplanned:  # one Pending task each, not announced yet
            counts["Queued" if ready(node) else "Pending"] += 1
        return counts

    def footer(self, now: float, width: int, *, color: bool, max_lines: int) -> list[str]:
        """The footer lines, each at most `width - 1` visible columns (a line the terminal
        wraps by itself would break the erase arithmetic): the counts wrap at their separators,
        a long task line wraps too; tasks that do not fit in `max_lines` are counted. Empty
        before the run has tasks."""
        if not self.tasks:
            return []
        limit = max(8, width - 1)
        counts = self.counts()
        parts = [(f"{status} {counts[status]}", _COLORS.get(status) if counts[status] else None)
                 for status in SHOWN_STATUSES]
        parts += [(f"{status} {n}", _COLORS.get(status)) for status, n in counts.items()
                  if status not in SHOWN_STATUSES and n]
        if self.started is not None:
            parts.append((format_duration(now - self.started), None))
        lines = _wrap_parts(parts, " | ", limit, color)
        running = sorted((t for t in self.tasks.values() if t.status == "Running"),
                         key=lambda t: (now if t.since is None else t.since, t.label))
        for index, task in enumerate(running):
            since = now if task.since is None else task.since
            block = _wrap_text(f"  > {task.label} ({format_duration(now - since)})", limit)
            left = len(running) - index
            # keep a line for "... and N more" unless this is the last task
            reserve = 0 if left == 1 else 1
            if len(lines) + len(block) + reserve > max_lines:
                lines.append(f"  ... and {left} more running"[:limit])
                break
            lines += block
        return lines[:max(1, max_lines)]


def _wrap_text(text: str, limit: int, indent: str = "    ") -> list[str]:
    """`text` in lines of at most `limit` columns, continuation lines indented."""
    lines = [text[:limit]]
    rest = text[limit:]
    room = max(1, limit - len(indent))
    while rest:
        lines.append(indent + rest[:room])
        rest = rest[room:]
    return lines


def _wrap_parts(parts: list[tuple[str, str | None]], sep: str, limit: int,
                color: bool) -> list[str]:
    """Join (text, SGR color) parts with `sep`, starting a new line where the next part would
    pass `limit` visible columns; colored when asked."""
    lines: list[str] = []
    out: list[str] = []
    used = 0
    for text, sgr in parts:
        text = text[:limit]
        lead = sep if out else ""
        if out and used + len(lead) + len(text) > limit:
            lines.append("".join(out))
            out, used, lead = [], 0, ""
        shown = f"\x1b[{sgr}m{text}\x1b[0m" if color and sgr else text
        out.append(lead + shown)
        used += len(lead) + len(text)
    if out:
        lines.append("".join(out))
    return lines
