"""The run document: the JSON shape every backend, the server and the CLI agree on.

A run is one JSON object (a plain dict, so that RFC 6902 diffs apply to it directly):

    {
      "id": uuid4, "name": str, "workflow": {...}, "workflow_digest": "sha256:...",
      "workflow_path": str | None,
      "params": {str: value},  # typed by params.schema; a secret param's value is "***"
      "status": RunStatus, "created_at": iso8601, "started_at": iso | None, "ended_at": iso | None,
      "cancel_requested": bool, "error": str | None,
      "tasks": {task_id: Task},
      "state": {...},          # the workflow state written by steps ($STATE_OUTPUTS)
      "warnings": [str],       # optional: what validation warned about when the run was made
      "bundle_path": str       # optional: the workflow file's directory (steps' CODEMOD_PATH)
    }

    Task = {
      "id": uuid4, "node_id": str, "status": TaskStatus,
      "master": bool,               # a matrix node's master task (never runs itself)
      "parent": uuid4 | None,       # a matrix child's master
      "matrix": {...} | None,       # a matrix child's item
      "matrix_key": str | None,     # canonical JSON of the item: identity across re-evaluation
      "triggered": bool,            # a manual task that a user has triggered
      "attempt": int,               # 0 before the first start; retries and re-runs increment it
      "interrupted": int,           # how often it was Running when its runner died
      "started_at": iso | None, "ended_at": iso | None,
      "step": int | None,           # index of the step running now or that failed
      "error": str | None,          # one line: why it Failed / was Blocked
      "canceled": true,             # only on a task a cancel stopped (it is Failed; shown Canceled)
      "outputs": {...}              # task outputs ($TASK_OUTPUTS)
    }

Every change to a document is a diff (see `runner.diff`); the helpers below build the
operations, they never mutate a document themselves.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

DOC_VERSION = 1


class TaskStatus(StrEnum):
    """Status of one task."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    AWAITING_TRIGGER = "AwaitingTrigger"
    BLOCKED = "Blocked"
    WONT_DO = "WontDo"


class RunStatus(StrEnum):
    """Status of a run."""

    PENDING = "Pending"
    RUNNING = "Running"
    AWAITING_TRIGGER = "AwaitingTrigger"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"


TERMINAL_TASK = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.WONT_DO,
                           TaskStatus.BLOCKED})
TERMINAL_RUN = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED})

Op = dict[str, Any]
"""One RFC 6902 operation: {"op": "add"|"replace"|"remove"|..., "path": "/a/b", "value": ...}."""


_second: tuple[int, str] = (-1, "")
"""The last second `utc_now` formatted, and its text: strftime runs once a second, not twice
per step (it was the costliest part of a step's events)."""


def utc_now() -> str:
    """The current time as documents and diffs record it, with milliseconds:
    `2023-06-15T10:30:45.123Z`."""
    global _second
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    cached = _second  # one tuple read: another thread may replace it, never tear it
    if cached[0] != seconds:
        cached = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
        _second = cached
    return f"{cached[1]}.{nanos // 1_000_000:03d}Z"


def new_id() -> str:
    """A fresh UUID v4 as a string."""
    return str(uuid.uuid4())


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys: the identity of a matrix item, the input of digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def workflow_digest(workflow: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the workflow."""
    return "sha256:" + hashlib.sha256(canonical_json(workflow).encode()).hexdigest()


def new_run(workflow: dict[str, Any], *, name: str, params: dict[str, str], created_at: str,
            workflow_path: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """A fresh Pending run document with no tasks (the scheduler creates them)."""
    return {
        "doc_version": DOC_VERSION,
        "id": run_id or new_id(),
        "name": name,
        "workflow": workflow,
        "workflow_digest": workflow_digest(workflow),
        "workflow_path": workflow_path,
        "params": dict(params),
        "status": RunStatus.PENDING.value,
        "created_at": created_at,
        "started_at": None,
        "ended_at": None,
        "cancel_requested": False,
        "error": None,
        "tasks": {},
        "state": {},
    }


def new_task(node_id: str, *, status: TaskStatus = TaskStatus.PENDING, master: bool = False,
             parent: str | None = None, matrix: dict[str, Any] | None = None,
             task_id: str | None = None) -> dict[str, Any]:
    """A task record ready to be added with `add_task_op`."""
    return {
        "id": task_id or new_id(),
        "node_id": node_id,
        "status": status.value,
        "master": master,
        "parent": parent,
        "matrix": matrix,
        "matrix_key": canonical_json(matrix) if matrix is not None else None,
        "triggered": False,
        "attempt": 0,
        "interrupted": 0,
        "started_at": None,
        "ended_at": None,
        "step": None,
        "error": None,
        "outputs": {},
    }


def pointer_escape(key: str) -> str:
    """Escape one JSON Pointer reference token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def add_task_op(task: dict[str, Any]) -> Op:
    """Add a new task to the document."""
    return {"op": "add", "path": f"/tasks/{task['id']}", "value": task}


def task_field_op(task_id: str, field: str, value: Any) -> Op:
    """Set one field of a task."""
    return {"op": "replace", "path": f"/tasks/{task_id}/{field}", "value": value}


def run_field_op(field: str, value: Any) -> Op:
    """Set one top-level field of the run."""
    return {"op": "replace", "path": f"/{field}", "value": value}


def state_set_op(key: str, value: Any) -> Op:
    """Set one top-level key of the workflow state (add works for new and existing keys)."""
    return {"op": "add", "path": f"/state/{pointer_escape(key)}", "value": value}


def task_label(doc: dict[str, Any], task: dict[str, Any]) -> str:
    """How Butterflow's transcripts name a task: `node` or `node, team: frontend` for a child.
    A shard's bookkeeping (`_meta_files`, `_meta_shard`) is left out: its `name` says which."""
    if task.get("matrix"):
        items = ", ".join(f"{k}: {_plain(v)}" for k, v in task["matrix"].items()
                          if not str(k).startswith("_meta_"))
        return f"{task['node_id']}, {items}" if items else str(task["node_id"])
    return str(task["node_id"])


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def patch_order(doc: dict[str, Any], task_id: str | None = None) -> list[str]:
    """The tasks whose `<task>.patch` logs make the run's patch, in the order to apply them:
    by the time each ended (a task's patch is taken when it ends), then by id; only `task_id`
    when given. Matrix masters run nothing and have none."""
    tasks = [t for t in (doc.get("tasks") or {}).values()
             if not t.get("master") and (task_id is None or t.get("id") == task_id)]
    tasks.sort(key=lambda t: (str(t.get("ended_at") or "~"), str(t.get("id"))))
    return [str(t["id"]) for t in tasks]


def patch_log_id(task_id: str) -> str:
    """The log a task's patch is kept in (next to the task's own log)."""
    return f"{task_id}.patch"


def retry_failed_ops(doc: Mapping[str, Any]) -> tuple[list[Op], list[str]]:
    """The operations that make a Failed run's failed and blocked tasks Pending again, and the
    ids of those tasks (matrix masters are reset too, their children decide their status)."""
    ops: list[Op] = []
    reset: list[str] = []
    broken = (TaskStatus.FAILED.value, TaskStatus.BLOCKED.value)
    for tid, task in (doc.get("tasks") or {}).items():
        if task.get("status") not in broken:
            continue
        ops += [task_field_op(tid, "status", TaskStatus.PENDING.value),
                task_field_op(tid, "error", None), task_field_op(tid, "ended_at", None),
                task_field_op(tid, "step", None)]
        if task.get("skipped"):
            ops.append(task_field_op(tid, "skipped", []))
        if not task.get("master"):
            reset.append(tid)
    ops += [run_field_op("status", RunStatus.PENDING.value), run_field_op("error", None),
            run_field_op("ended_at", None)]
    return ops, reset
