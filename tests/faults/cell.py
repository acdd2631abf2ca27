"""A cell of the fault matrix, the evidence a cell leaves, and what the proxy sees of it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.workflow import Mark

_STATUS_PATH = re.compile(r"^/tasks/([^/]+)/status$")


@dataclass(frozen=True)
class Cell:
    """One cell: the fault (`row`), its moment (`when`), the recovery and the expected end."""

    row: str
    when: str
    recovery: str
    expect: str = "Completed"
    """The run's final status on the server; `Failed: text` also wants `text` in its error."""
    needs: str = ""
    """Work of another change this cell's guarantee depends on (said in the report)."""

    @property
    def name(self) -> str:
        """`row/when/recovery`."""
        return f"{self.row}/{self.when}/{self.recovery}"


@dataclass
class Evidence:
    """What a cell left: the server's view, the steps' marks, the runners' journals."""

    doc: dict[str, Any] = field(default_factory=dict)
    queue: str = ""
    logs: dict[str, bytes] = field(default_factory=dict)
    marks: dict[str, list[Mark]] = field(default_factory=dict)
    completed_at: dict[str, float] = field(default_factory=dict)
    """Task id -> when the server first acknowledged a batch setting it Completed."""
    journals_left: list[Path] = field(default_factory=list)
    set_aside: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    injected_at: float | None = None
    concurrent: list[str] = field(default_factory=list)
    """Older attempts of a step seen alive (/proc) when a newer one started."""


def _ops(body: bytes) -> list[dict[str, Any]]:
    try:
        batch = json.loads(body)
    except ValueError:
        return []
    return [op for diff in batch.get("diffs", []) for op in diff.get("ops", [])
            if isinstance(op, dict)]


def completed_tasks(body: bytes) -> list[str]:
    """The tasks a diff batch (a request body) sets Completed."""
    out = []
    for op in _ops(body):
        match = _STATUS_PATH.match(str(op.get("path", "")))
        if match and op.get("value") == "Completed":
            out.append(match.group(1))
    return out


def sets_completed(body: bytes) -> bool:
    """Whether a diff batch sets a task Completed."""
    return bool(completed_tasks(body))


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
