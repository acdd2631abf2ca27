"""Text renderings shared by the local and `--server` commands: status trees, run lists, task
lines, the paused block, history. Pure functions of documents: they return lines, never print.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from runner.diff import Diff
from runner.document import RunStatus, TaskStatus, task_label
from runner.state.backend import RunSummary

PROG = "ferry"

_END_LABEL = {
    RunStatus.COMPLETED.value: "Completed",
    RunStatus.FAILED.value: "Failed",
    RunStatus.CANCELED.value: "Canceled",
}


def display_time(ts: str | None) -> str:
    """`2023-06-15T10:30:45Z` from a stored timestamp (milliseconds dropped), '-' if none."""
    if not ts:
        return "-"
    if "." in ts:
        head, _, tail = ts.partition(".")
        zone = "Z" if tail.endswith("Z") else ""
        return head + zone
    return ts


def _parse(ts: str) -> datetime | None:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def format_duration(seconds: float) -> str:
    """`HH:MM:SS` as in Butterflow's transcripts."""
    total = max(0, int(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def duration(start: str | None, end: str | None, now: datetime | None = None) -> str | None:
    """The duration between two stored timestamps (or start and now); None without a start."""
    if not start:
        return None
    begin = _parse(start)
    finish = _parse(end) if end else (now or datetime.now(UTC))
    if begin is None or finish is None:
        return None
    return format_duration((finish - begin).total_seconds())


def stamp(ts: str) -> str:
    """The `[2023-06-15T10:30:45Z]` prefix of an event line."""
    return f"[{display_time(ts)}]"


# -- tasks ------------------------------------------------------------------------------------

def ordered_tasks(doc: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Top-level tasks in workflow node order, each with its matrix children (creation order)."""
    tasks: dict[str, dict[str, Any]] = doc.get("tasks") or {}
    children: dict[str, list[dict[str, Any]]] = {}
    tops: list[dict[str, Any]] = []
    for task in tasks.values():
        parent = task.get("parent")
        if parent:
            children.setdefault(parent, []).append(task)
        else:
            tops.append(task)
    order = {n.get("id"): i for i, n in enumerate((doc.get("workflow") or {}).get("nodes") or [])}
    tops.sort(key=lambda t: order.get(t.get("node_id"), len(order)))
    return [(t, children.get(t["id"], [])) for t in tops]


def node_of(doc: dict[str, Any], node_id: str) -> dict[str, Any]:
    """The workflow node definition (raw dict) of a node id, or {}."""
    for node in (doc.get("workflow") or {}).get("nodes") or []:
        if node.get("id") == node_id:
            return dict(node)
    return {}


def _matrix_text(task: dict[str, Any]) -> str:
    items = task.get("matrix") or {}
    return ", ".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}"
                     for k, v in items.items())


def reason(status: str, error: str) -> str:
    """A task's error as shown after its status, without repeating the status (runs written
    before 0.2 stored `blocked: upstream node 'x' failed`)."""
    prefix = f"{status.lower()}: "
    return error[len(prefix):] if error.lower().startswith(prefix) else error


def shown_status(task: dict[str, Any]) -> str:
    """The status a person reads: a task stopped by a cancel is stored Failed (with `canceled:
    true`) and shown Canceled."""
    if task.get("canceled") and task.get("status") == TaskStatus.FAILED.value:
        return "Canceled"
    return str(task.get("status"))


def task_details(doc: dict[str, Any], task: dict[str, Any]) -> str:
    """The extras after a task's status: attempts, retries, timeouts, interruptions, error."""
    node = node_of(doc, task.get("node_id", ""))
    bits: list[str] = []
    retry = node.get("retry") or {}
    attempts = int(retry.get("attempts", 1)) if isinstance(retry, dict) else 1
    attempt = int(task.get("attempt") or 0)
    if task.get("master"):
        return ""
    if attempts > 1 and attempt:
        bits.append(f"attempt {attempt}/{attempts}")
    elif attempt > 1:
        bits.append(f"attempt {attempt}")
    if node.get("timeout"):
        bits.append(f"timeout {node['timeout']}")
    if task.get("interrupted"):
        bits.append(f"interrupted {task['interrupted']}x")
    if task.get("triggered"):
        bits.append("triggered")
    skipped = task.get("skipped") or []
    if skipped:
        bits.append("skipped: " + ", ".join(f"'{s.get('name')}'" for s in skipped))
    text = f" [{', '.join(bits)}]" if bits else ""
    if task.get("error") and task.get("status") in {TaskStatus.FAILED.value,
                                                    TaskStatus.BLOCKED.value,
                                                    TaskStatus.WONT_DO.value}:
        text += f" - {reason(task['status'], task['error'])}"
    return text


def task_line(doc: dict[str, Any], task: dict[str, Any], indent: str = "") -> str:
    """One line of the status tree: `- node (id): Status [extras]`."""
    if task.get("master"):
        name = f"{task['node_id']} (master)"
    elif task.get("matrix"):
        name = f"{task['node_id']} ({_matrix_text(task)})"
    else:
        name = str(task["node_id"])
    return f"{indent}- {name} ({task['id']}): {shown_status(task)}{task_details(doc, task)}"


def awaiting(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Tasks waiting for a manual trigger, in display order."""
    out: list[dict[str, Any]] = []
    for top, kids in ordered_tasks(doc):
        for task in [top, *kids]:
            if task["status"] == TaskStatus.AWAITING_TRIGGER.value and not task.get("master"):
                out.append(task)
    return out


def trigger_list(doc: dict[str, Any], tasks: Iterable[dict[str, Any]]) -> list[str]:
    """`- <id> (node, team: frontend)` lines."""
    return [f"- {t['id']} ({task_label(doc, t)})" for t in tasks]


# -- status -----------------------------------------------------------------------------------

def render_status(doc: dict[str, Any], history: Sequence[Diff] | None = None,
                  now: datetime | None = None) -> list[str]:
    """`ferry status` output: header, task tree, manual triggers (and the history if given)."""
    status = str(doc.get("status"))
    lines = [f"Workflow: {doc.get('name') or '-'} (ID: {doc['id']})", f"Status: {status}"]
    if doc.get("cancel_requested") and status not in _END_LABEL:
        lines[-1] += " (cancel requested)"
    if doc.get("started_at"):
        lines.append(f"Started: {display_time(doc['started_at'])}")
    if status in _END_LABEL and doc.get("ended_at"):
        lines.append(f"{_END_LABEL[status]}: {display_time(doc['ended_at'])}")
    took = duration(doc.get("started_at"),
                    doc.get("ended_at") if status in _END_LABEL else None, now)
    if took:
        lines.append(f"Duration: {took}")
    if doc.get("params"):
        lines.append("Params: " + ", ".join(f"{k}={v}" for k, v in doc["params"].items()))
    if doc.get("error"):
        lines.append(f"Error: {doc['error']}")
    for warning in doc.get("warnings") or []:
        lines.append(f"Warning: {warning.removeprefix('Warning ').removeprefix('at ')}")
    lines += ["", "Tasks:"]
    tree = ordered_tasks(doc)
    if not tree:
        lines.append("- (none yet)")
    for top, kids in tree:
        lines.append(task_line(doc, top))
        lines.extend(task_line(doc, kid, "  ") for kid in kids)
    interrupted = sum(1 for t in (doc.get("tasks") or {}).values() if t.get("interrupted"))
    if interrupted:
        lines += ["", f"Interrupted tasks (re-run after a crash): {interrupted}"]
    waiting = awaiting(doc)
    lines.append("")
    if waiting:
        lines.append("Manual triggers required:")
        lines += trigger_list(doc, waiting)
    else:
        lines.append("Manual triggers required: None")
    if history is not None:
        lines += ["", "History:"]
        lines += render_history(doc, history)
    return lines


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_op(doc: dict[str, Any], op: dict[str, Any]) -> str:
    """One operation in words: `task hello (id) created`, `state.k = 1`, `run status = ...`."""
    path = str(op.get("path", ""))
    parts = path.split("/")[1:]
    tasks = doc.get("tasks") or {}
    if len(parts) >= 2 and parts[0] == "tasks":
        task = tasks.get(parts[1])
        name = task_label(doc, task) if task else parts[1]
        if len(parts) == 2 and op.get("op") == "add":
            value = op.get("value") or {}
            kind = "master task" if value.get("master") else "task"
            return f"{kind} {name} ({parts[1]}) created: {value.get('status')}"
        field = "/".join(parts[2:])
        return f"task {name}: {field} = {_short(op.get('value'))}"
    if parts and parts[0] == "state":
        key = ".".join(parts[1:])
        verb = "+=" if key.endswith(".-") else "="
        return f"state.{key.removesuffix('.-')} {verb} {_short(op.get('value'))}"
    if op.get("op") == "replace" and len(parts) == 1:
        return f"run {parts[0]} = {_short(op.get('value'))}"
    return f"{op.get('op')} {path or '/'} = {_short(op.get('value'))}"


def _describe_ops(doc: dict[str, Any], ops: Sequence[dict[str, Any]]) -> str:
    """Ops in words, consecutive changes of one task's fields folded into one phrase."""
    phrases: list[str] = []
    last_task: str | None = None
    for op in ops:
        text = describe_op(doc, op)
        parts = str(op.get("path", "")).split("/")[1:]
        is_field = len(parts) >= 3 and parts[0] == "tasks"
        if is_field and parts[1] == last_task and phrases:
            phrases[-1] += ", " + text.split(": ", 1)[1]
        else:
            phrases.append(text)
        last_task = parts[1] if is_field else None
    return "; ".join(phrases)


def render_history(doc: dict[str, Any], history: Sequence[Diff]) -> list[str]:
    """Each diff: `[ts] writer #seq: what changed` in the order applied."""
    lines = [f"[{display_time(doc.get('created_at'))}] run created"]
    for diff in history:
        ops = diff.ops
        words = _describe_ops(doc, ops[:8])
        if len(ops) > 8:
            words += f"; ... ({len(ops) - 8} more)"
        late = (" [late: kept, not applied — the run had already ended]"
                if diff.meta.get("ignored") else "")
        lines.append(f"{stamp(diff.ts or '')} {diff.writer} #{diff.seq}: {words}{late}")
    return lines


# -- list -------------------------------------------------------------------------------------

def render_runs(summaries: Sequence[RunSummary], now: datetime | None = None) -> list[str]:
    """`ferry list` output, newest first, as in Butterflow's CLI."""
    if not summaries:
        return ["No workflow runs found."]
    lines = ["Recent workflow runs:"]
    for i, run in enumerate(summaries):
        if i:
            lines.append("")
        lines += [f"- ID: {run.id}", f"  Name: {run.name or '-'}", f"  Status: {run.status}"]
        # a run no runner has started yet has a creation time, not a start
        lines.append(f"  Started: {display_time(run.started_at)}" if run.started_at
                     else f"  Created: {display_time(run.created_at)}")
        if run.status in _END_LABEL and run.ended_at:
            lines.append(f"  {_END_LABEL[run.status]}: {display_time(run.ended_at)}")
        took = duration(run.started_at,
                        run.ended_at if run.status in _END_LABEL else None, now)
        if took:
            lines.append(f"  Duration: {took}")
    return lines


# -- the end of a run -------------------------------------------------------------------------

def render_paused(doc: dict[str, Any], ts: str, *, again: bool = False) -> list[str]:
    """The block printed when a run stops for manual triggers, with the exact commands."""
    waiting = awaiting(doc)
    still = "still " if again else ""
    lines = [f"{stamp(ts)} Workflow paused: Manual triggers {still}required", "",
             f"Workflow is {still}awaiting manual triggers for the following tasks:"]
    lines += trigger_list(doc, waiting)
    run_id = doc["id"]
    lines += ["", f"Use '{PROG} status -i {run_id}' to check status"]
    if waiting:
        lines.append(f"Use '{PROG} resume -i {run_id} -t {waiting[0]['id']}' "
                     "to trigger one task")
    lines.append(f"Use '{PROG} resume -i {run_id} --trigger-all' to trigger all tasks")
    return lines


def render_finished(doc: dict[str, Any], ts: str) -> list[str]:
    """The last lines of a run that ended Completed, Failed or Canceled."""
    status = doc.get("status")
    if status == RunStatus.COMPLETED.value:
        return [f"{stamp(ts)} All tasks completed successfully", f"{stamp(ts)} Workflow completed"]
    if status == RunStatus.CANCELED.value:
        return [f"{stamp(ts)} Workflow canceled"]
    lines = [f"{stamp(ts)} Workflow failed" + (f": {doc['error']}" if doc.get("error") else "")]
    for top, kids in ordered_tasks(doc):
        for task in [top, *kids]:
            if task.get("master"):
                continue
            if task["status"] in {TaskStatus.FAILED.value, TaskStatus.BLOCKED.value}:
                why = f": {reason(task['status'], task['error'])}" if task.get("error") else ""
                lines.append(f"  - {task_label(doc, task)} ({task['id']}): "
                             f"{shown_status(task)}{why}")
    return lines
