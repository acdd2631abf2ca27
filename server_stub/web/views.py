"""What the pages show, computed from run documents: the task tree, node statuses for the
graph, the diff history in words, params with secret ones masked. Pure functions."""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from runner.document import TERMINAL_RUN, RunStatus, TaskStatus, task_label
from runner.secrets.params import MASKED_PARAM
from runner.workflow.graph_svg import to_svg
from runner.workflow.model import Workflow
from server_stub.web.render import seconds_between

SECRET = MASKED_PARAM


@dataclass
class TaskRow:
    """One line of the task tree."""

    id: str
    node_id: str
    name: str
    item: str
    status: str
    master: bool
    child: bool
    attempt: int
    interrupted: int
    started_at: str | None
    ended_at: str | None
    seconds: float | None
    skipped: list[str] = field(default_factory=list)
    error: str = ""
    triggered: bool = False

    @property
    def awaiting(self) -> bool:
        """Waiting for a manual trigger."""
        return self.status == TaskStatus.AWAITING_TRIGGER.value and not self.master


def shown_status(task: dict[str, Any]) -> str:
    """A task a cancel stopped is stored Failed with `canceled` and shown Canceled."""
    if task.get("canceled") and task.get("status") == TaskStatus.FAILED.value:
        return "Canceled"
    return str(task.get("status") or "Pending")


def run_status(doc: dict[str, Any]) -> str:
    """The run's status as the list shows it."""
    return str(doc.get("status") or "Pending")


def node_names(doc: dict[str, Any]) -> dict[str, str]:
    """Node id -> display name, in declaration order."""
    return OrderedDict((str(n.get("id")), str(n.get("name") or n.get("id")))
                       for n in (doc.get("workflow") or {}).get("nodes") or [])


def task_tree(doc: dict[str, Any]) -> list[TaskRow]:
    """Top-level tasks in node order, each followed by its matrix children."""
    tasks: dict[str, dict[str, Any]] = doc.get("tasks") or {}
    names = node_names(doc)
    order = {n: i for i, n in enumerate(names)}
    children: dict[str, list[dict[str, Any]]] = {}
    tops: list[dict[str, Any]] = []
    for task in tasks.values():
        (children.setdefault(task["parent"], []) if task.get("parent") else tops).append(task)
    tops.sort(key=lambda t: order.get(str(t.get("node_id")), len(order)))
    rows: list[TaskRow] = []
    for top in tops:
        kids = children.get(top["id"], [])
        rows.append(_row(doc, top, names, kids, child=False))
        rows += [_row(doc, kid, names, [], child=True) for kid in kids]
    return rows


def _row(doc: dict[str, Any], task: dict[str, Any], names: dict[str, str],
         kids: list[dict[str, Any]], *, child: bool) -> TaskRow:
    started, ended = task.get("started_at"), task.get("ended_at")
    if task.get("master") and kids:
        starts = [k["started_at"] for k in kids if k.get("started_at")]
        ends = [k["ended_at"] for k in kids if k.get("ended_at")]
        started = min(starts) if starts else None
        ended = max(ends) if ends and len(ends) == len(kids) else None
    item = ""
    if task.get("matrix"):
        item = task_label(doc, task).split(", ", 1)[-1]
    return TaskRow(
        id=str(task["id"]), node_id=str(task.get("node_id")),
        name=names.get(str(task.get("node_id")), str(task.get("node_id"))), item=item,
        status=shown_status(task), master=bool(task.get("master")), child=child,
        attempt=int(task.get("attempt") or 0), interrupted=int(task.get("interrupted") or 0),
        started_at=started, ended_at=ended, seconds=seconds_between(started, ended),
        skipped=[str(s.get("name") or s.get("index", "?")) if isinstance(s, dict) else str(s)
                 for s in task.get("skipped") or []],
        error=str(task.get("error") or ""), triggered=bool(task.get("triggered")))


def auto_task(tree: list[TaskRow]) -> str:
    """The task whose log the page follows when none was chosen: the first running one, else
    the last one that started ('' before any did)."""
    running = [r.id for r in tree if r.status == "Running" and not r.master]
    ran = [r.id for r in tree if r.started_at and not r.master]
    return running[0] if running else (ran[-1] if ran else "")


def node_statuses(doc: dict[str, Any]) -> dict[str, str]:
    """Each node's status for the graph: its task's, or its matrix master's."""
    out: dict[str, str] = {}
    for task in (doc.get("tasks") or {}).values():
        if task.get("parent"):
            continue
        out[str(task.get("node_id"))] = shown_status(task)
    return out


_GRAPHS: OrderedDict[tuple[str, str], str] = OrderedDict()


def graph(doc: dict[str, Any], run_path: str) -> str:
    """The workflow drawn with its nodes' statuses (cached by digest and statuses)."""
    statuses = node_statuses(doc)
    key = (str(doc.get("workflow_digest")), json.dumps(statuses, sort_keys=True))
    cached = _GRAPHS.get(key)
    if cached is not None:
        _GRAPHS.move_to_end(key)
        return cached
    try:
        workflow = Workflow.model_validate(doc.get("workflow") or {})
    except ValueError:
        return '<p class="muted">This run\'s workflow cannot be drawn.</p>'
    first: dict[str, str] = {}
    for row in task_tree(doc):
        first.setdefault(row.node_id, f"{run_path}?task={row.id}#task-{row.id}")
    svg = to_svg(workflow, statuses, first, title=str(doc.get("name") or ""))
    _GRAPHS[key] = svg
    while len(_GRAPHS) > 256:
        _GRAPHS.popitem(last=False)
    return svg


def params_shown(params: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(name, value, secret) for each param; a secret one's value is never shown."""
    return [(k, "" if v == SECRET else _text(v), v == SECRET) for k, v in params.items()]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def finished(status: str) -> bool:
    """The run ended (Completed, Failed, Canceled)."""
    return status in {s.value for s in TERMINAL_RUN}


def can_cancel(queue: str) -> bool:
    """A run that has not ended may be canceled."""
    return queue != "done"


def can_retry(queue: str, status: str) -> bool:
    """A Failed run that ended may have its failed tasks run again."""
    return queue == "done" and status == RunStatus.FAILED.value


# -- history ----------------------------------------------------------------------------------

def _short(value: Any, limit: int = 80) -> str:
    text = _text(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def describe_op(doc: dict[str, Any], op: dict[str, Any]) -> str:
    """One operation in words."""
    parts = str(op.get("path", "")).split("/")[1:]
    tasks = doc.get("tasks") or {}
    if len(parts) >= 2 and parts[0] == "tasks":
        task = tasks.get(parts[1])
        name = task_label(doc, task) if task else parts[1][:8]
        if len(parts) == 2 and op.get("op") == "add":
            value = op.get("value") or {}
            kind = "master task" if value.get("master") else "task"
            return f"{kind} {name} created ({value.get('status')})"
        return f"{name}: {'/'.join(parts[2:])} = {_short(op.get('value'))}"
    if parts and parts[0] == "state":
        return f"state.{'.'.join(parts[1:])} = {_short(op.get('value'))}"
    if len(parts) == 1 and op.get("op") in ("replace", "add"):
        return f"run {parts[0]} = {_short(op.get('value'))}"
    return f"{op.get('op')} {op.get('path') or '/'}"


def describe(doc: dict[str, Any], ops: list[dict[str, Any]], limit: int = 6) -> list[str]:
    """The first `limit` operations of a diff in words, and how many more there are."""
    words = [describe_op(doc, op) for op in ops[:limit]]
    if len(ops) > limit:
        words.append(f"… {len(ops) - limit} more")
    return words
