"""The scheduler: a pure function from (workflow, run document) to the transitions to make.

`plan(workflow, doc) -> Plan` does no I/O and reads no clock. One pass indexes the tasks by node
once and walks the nodes in dependency order, so it is linear in tasks + nodes + edges: a
10,000-child matrix costs one walk, never a rescan per task.

Rules (Butterflow's, made precise; docs/design.md):
- A regular node gets one task. A matrix node gets one master (never runs) plus one child per
  item; `values` children are created with the master; `from_state` is re-evaluated on every
  pass, keyed by `matrix_key`: new items get children, children of removed items become WontDo
  (a Running one is left to finish and becomes WontDo on a later pass), a WontDo child whose item
  comes back is Pending again. A missing or empty state key gives a master with no children; a
  state value that is not an array fails the master. A non-object item `x` becomes `{"item": x}`.
- A dependency is satisfied when every task of that node (master included, WontDo children
  ignored) is Completed. A task whose dependency Failed or is Blocked becomes Blocked, with an
  error naming the failed upstream node; it returns to Pending if that failure goes away.
- Manual nodes (`type: manual` or `trigger: {type: manual}`) become AwaitingTrigger only once
  their dependencies are Completed (so the resume commands printed at a pause make sense), and
  run once triggered (`triggered: true`, status Pending).
- A master's status is derived from its children: any Failed -> Failed; else any Running ->
  Running; else any AwaitingTrigger -> AwaitingTrigger; else any Blocked -> Blocked; else all
  Completed -> Completed; else Pending. With no children it follows its dependencies: Completed
  once they are satisfied, Blocked when they failed.
- Run status: Canceled when `cancel_requested` (every task not yet started becomes WontDo);
  Running while anything runs or can run; AwaitingTrigger when only triggers remain; Failed when
  nothing can run any more and a task Failed or is Blocked; else Completed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.document import (
    Op,
    RunStatus,
    TaskStatus,
    add_task_op,
    canonical_json,
    new_id,
    new_task,
    task_field_op,
)
from runner.workflow.model import Node, Workflow

_S = TaskStatus
_BROKEN = frozenset({_S.FAILED.value, _S.BLOCKED.value})
_NOT_STARTED = frozenset({_S.PENDING.value, _S.AWAITING_TRIGGER.value})


@dataclass(frozen=True)
class Transition:
    """A task whose status this pass changes."""

    task_id: str
    old: str | None
    """None for a task created in this pass."""
    new: str
    error: str | None = None


@dataclass(frozen=True)
class Plan:
    """What one scheduling pass decided."""

    ops: list[Op]
    """Operations to apply as one diff (task creation, status and error changes)."""
    runnable: list[str]
    """Tasks to start now, in dependency order then creation order."""
    status: RunStatus
    """The run's status after the ops are applied."""
    error: str | None = None
    """Why the run Failed (one line), else None."""
    transitions: list[Transition] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    """Task records created in this pass (masters before their children)."""
    awaiting: list[str] = field(default_factory=list)
    """Tasks AwaitingTrigger after this pass (not masters)."""


def topological_order(workflow: Workflow) -> list[Node]:
    """Nodes with every dependency before its dependents (declaration order among equals).
    A cycle (which validation refuses) leaves its nodes at the end rather than looping."""
    nodes = {n.id: n for n in workflow.nodes}
    indegree = {n.id: sum(1 for d in n.depends_on if d in nodes) for n in workflow.nodes}
    dependents: dict[str, list[str]] = {n.id: [] for n in workflow.nodes}
    for n in workflow.nodes:
        for d in n.depends_on:
            if d in nodes:
                dependents[d].append(n.id)
    ready = [n.id for n in workflow.nodes if indegree[n.id] == 0]
    order: list[Node] = []
    i = 0
    while i < len(ready):
        nid = ready[i]
        i += 1
        order.append(nodes[nid])
        for dep in dependents[nid]:
            indegree[dep] -= 1
            if indegree[dep] == 0:
                ready.append(dep)
    if len(order) < len(nodes):
        seen = {n.id for n in order}
        order.extend(n for n in workflow.nodes if n.id not in seen)
    return order


def matrix_items(node: Node, state: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The matrix items of a node now (objects; a scalar `x` becomes `{"item": x}`) and an error
    when the `from_state` value is not an array."""
    strategy = node.strategy
    if strategy is None:
        return [], None
    if strategy.values is not None:
        raw: Any = strategy.values
    else:
        key = strategy.from_state or ""
        raw = state.get(key)
        if raw is None:
            return [], None
        if not isinstance(raw, list):
            kind = type(raw).__name__
            return [], f"matrix state key '{key}' holds a {kind}, not an array"
    return [item if isinstance(item, dict) else {"item": item} for item in raw], None


@dataclass
class _NodeView:
    """What dependents need to know about a node after it was planned."""

    done: bool
    broken: str | None  # root upstream node that failed, when this node failed or is blocked


class _Pass:
    """One scheduling pass; holds the overlay of statuses changed so far."""

    def __init__(self, workflow: Workflow, doc: Mapping[str, Any],
                 id_factory: Callable[[], str]) -> None:
        self.workflow = workflow
        self.doc = doc
        self.new_id = id_factory
        self.ops: list[Op] = []
        self.transitions: list[Transition] = []
        self.created: list[dict[str, Any]] = []
        self.runnable: list[str] = []
        self.awaiting: list[str] = []
        self.status: dict[str, str] = {}
        self.errors: dict[str, str | None] = {}
        self.views: dict[str, _NodeView] = {}
        self.by_node: dict[str, list[dict[str, Any]]] = {}
        for task in doc.get("tasks", {}).values():
            self.by_node.setdefault(task["node_id"], []).append(task)
            self.status[task["id"]] = task["status"]

    # -- writing -----------------------------------------------------------------------------
    def create(self, node_id: str, status: TaskStatus, *, master: bool = False,
               parent: str | None = None, matrix: dict[str, Any] | None = None,
               error: str | None = None) -> dict[str, Any]:
        task = new_task(node_id, status=status, master=master, parent=parent, matrix=matrix,
                        task_id=self.new_id())
        task["error"] = error
        self.ops.append(add_task_op(task))
        self.created.append(task)
        self.transitions.append(Transition(task["id"], None, status.value, error))
        self.status[task["id"]] = status.value
        self.errors[task["id"]] = error
        return task

    def set(self, task: dict[str, Any], status: TaskStatus, error: str | None = None) -> None:
        tid = task["id"]
        old = self.status[tid]
        old_error = self.errors.get(tid, task.get("error"))
        if old == status.value and old_error == error:
            return
        if old != status.value:
            self.ops.append(task_field_op(tid, "status", status.value))
            self.transitions.append(Transition(tid, old, status.value, error))
        if old_error != error:
            self.ops.append(task_field_op(tid, "error", error))
        self.status[tid] = status.value
        self.errors[tid] = error

    # -- planning ----------------------------------------------------------------------------
    def deps_view(self, node: Node) -> _NodeView:
        done = True
        broken: str | None = None
        for dep in node.depends_on:
            view = self.views.get(dep)
            if view is None:  # unknown node: validation refuses it; never satisfied
                done = False
                continue
            if view.broken is not None and broken is None:
                broken = view.broken
            done = done and view.done
        return _NodeView(done=done and broken is None, broken=broken)

    def plan_node(self, node: Node, cancel: bool) -> None:
        deps = self.deps_view(node)
        tasks = self.by_node.get(node.id, [])
        if node.is_matrix:
            self.plan_matrix(node, tasks, deps, cancel)
        else:
            if not tasks:
                tasks = [self.create(node.id, _S.PENDING)]
                self.by_node[node.id] = tasks
            for task in tasks:
                self.plan_leaf(node, task, deps, cancel)
        self.views[node.id] = self.summarize(node.id, self.by_node.get(node.id, []))

    def plan_leaf(self, node: Node, task: dict[str, Any], deps: _NodeView, cancel: bool) -> None:
        status = self.status[task["id"]]
        if cancel:
            if status in _NOT_STARTED:
                self.set(task, _S.WONT_DO, "canceled")
            return
        if status == _S.BLOCKED.value and deps.broken is None:
            status = _S.PENDING.value
            self.set(task, _S.PENDING)
        if status not in _NOT_STARTED:
            return
        if deps.broken is not None:
            self.set(task, _S.BLOCKED, f"upstream node '{deps.broken}' failed")
        elif not deps.done:
            if status != _S.PENDING.value:
                self.set(task, _S.PENDING)
        elif node.is_manual and not task.get("triggered"):
            self.set(task, _S.AWAITING_TRIGGER)
            self.awaiting.append(task["id"])
        elif status == _S.PENDING.value:
            self.runnable.append(task["id"])
        else:  # AwaitingTrigger but triggered: a trigger diff that forgot the status
            self.set(task, _S.PENDING)
            self.runnable.append(task["id"])

    def plan_matrix(self, node: Node, tasks: list[dict[str, Any]], deps: _NodeView,
                    cancel: bool) -> None:
        master = next((t for t in tasks if t.get("master")), None)
        children = [t for t in tasks if not t.get("master")]
        items, item_error = matrix_items(node, self.doc.get("state") or {})
        if master is None:
            master = self.create(node.id, _S.PENDING, master=True)
            tasks = [master]
            self.by_node[node.id] = tasks
        strategy = node.strategy
        reevaluate = strategy is not None and strategy.values is None
        if reevaluate or not children:
            wanted: dict[str, dict[str, Any]] = {}
            for item in items:
                wanted.setdefault(canonical_json(item), item)
            existing = {t["matrix_key"]: t for t in children}
            if reevaluate:
                for key, child in existing.items():
                    status = self.status[child["id"]]
                    if key not in wanted and status not in (_S.WONT_DO.value, _S.RUNNING.value):
                        self.set(child, _S.WONT_DO, "matrix item removed from state")
                    elif key in wanted and status == _S.WONT_DO.value and not cancel:
                        self.set(child, _S.PENDING)
            if not cancel:
                for key, item in wanted.items():
                    if key not in existing:
                        child = self.create(node.id, _S.PENDING, parent=master["id"],
                                            matrix=item)
                        children.append(child)
                        tasks.append(child)
        for child in children:
            if self.status[child["id"]] != _S.WONT_DO.value:
                self.plan_leaf(node, child, deps, cancel)
        self.set_master(master, children, deps, item_error, cancel)

    def set_master(self, master: dict[str, Any], children: Iterable[dict[str, Any]],
                   deps: _NodeView, item_error: str | None, cancel: bool) -> None:
        counts: dict[str, int] = {}
        for child in children:
            st = self.status[child["id"]]
            counts[st] = counts.get(st, 0) + 1
        counts.pop(_S.WONT_DO.value, None)
        total = sum(counts.values())
        # children a cancel stopped are Failed with `canceled`: the master is canceled, not failed
        stopped = sum(1 for c in children
                      if c.get("canceled") and self.status[c["id"]] == _S.FAILED.value)
        failed = counts.get(_S.FAILED.value, 0) - stopped
        error: str | None = None
        if item_error is not None:
            status, error = _S.FAILED, item_error
        elif failed:
            status, error = _S.FAILED, f"{failed} of {total} matrix tasks failed"
        elif counts.get(_S.RUNNING.value):
            status = _S.RUNNING
        elif counts.get(_S.AWAITING_TRIGGER.value):
            status = _S.AWAITING_TRIGGER
        elif counts.get(_S.BLOCKED.value) or (total == 0 and deps.broken is not None):
            broken = deps.broken or "?"
            status, error = _S.BLOCKED, f"upstream node '{broken}' failed"
        elif total == 0:
            status = _S.COMPLETED if deps.done else _S.PENDING
        elif counts.get(_S.COMPLETED.value) == total:
            status = _S.COMPLETED
        else:
            status = _S.PENDING
        if cancel and status in (_S.PENDING, _S.AWAITING_TRIGGER, _S.RUNNING):
            status, error = _S.WONT_DO, "canceled"
        self.set(master, status, error)

    def summarize(self, node_id: str, tasks: list[dict[str, Any]]) -> _NodeView:
        done = True
        broken: str | None = None
        for task in tasks:
            st = self.status[task["id"]]
            if st == _S.WONT_DO.value and not task.get("master"):
                continue
            if st != _S.COMPLETED.value:
                done = False
            if st in _BROKEN and broken is None:
                err = self.errors.get(task["id"], task.get("error")) or ""
                broken = _upstream_root(err) if st == _S.BLOCKED.value else node_id
                broken = broken or node_id
        return _NodeView(done=done and bool(tasks), broken=broken)


def _upstream_root(error: str) -> str | None:
    """The node named in a Blocked task's error, so that a chain names the original failure."""
    marker = "upstream node '"
    start = error.find(marker)
    if start < 0:
        return None
    start += len(marker)
    end = error.find("'", start)
    return error[start:end] if end > start else None


def plan(workflow: Workflow, doc: Mapping[str, Any],
         id_factory: Callable[[], str] = new_id) -> Plan:
    """One scheduling pass over the run document: the ops to apply, what can start now, and the
    run's resulting status. Pure: `doc` is not modified (ids come from `id_factory`)."""
    cancel = bool(doc.get("cancel_requested"))
    state = _Pass(workflow, doc, id_factory)
    for node in topological_order(workflow):
        state.plan_node(node, cancel)
    if cancel:
        return Plan(state.ops, [], RunStatus.CANCELED, "canceled", state.transitions,
                    state.created, [])
    statuses = state.status
    running = any(st == _S.RUNNING.value for st in statuses.values())
    status, error = RunStatus.COMPLETED, None
    if state.runnable or running:
        status = RunStatus.RUNNING
    elif state.awaiting:
        status = RunStatus.AWAITING_TRIGGER
    else:
        failed = _first_failure(state, workflow)
        if failed is not None:
            status, error = RunStatus.FAILED, failed
        elif any(st == _S.PENDING.value for st in statuses.values()):
            # Unreachable when the workflow is valid: something waits on nothing that can run.
            status, error = RunStatus.FAILED, "no task can run: dependencies can never complete"
    return Plan(state.ops, state.runnable, status, error, state.transitions, state.created,
                state.awaiting)


def _first_failure(state: _Pass, workflow: Workflow) -> str | None:
    """One line naming the first failed task in node order, or None when nothing failed."""
    blocked: str | None = None
    for node in topological_order(workflow):
        for task in state.by_node.get(node.id, []):
            st = state.status[task["id"]]
            if st == _S.FAILED.value and not task.get("master"):
                err = state.errors.get(task["id"], task.get("error"))
                suffix = f": {err}" if err else ""
                return f"task {_label(task)} failed{suffix}"
            if st == _S.FAILED.value and blocked is None:
                blocked = f"matrix node '{node.id}' failed: " + str(
                    state.errors.get(task["id"], task.get("error")))
            if st == _S.BLOCKED.value and blocked is None:
                blocked = f"task {_label(task)} is blocked"
    return blocked


def _label(task: Mapping[str, Any]) -> str:
    matrix = task.get("matrix")
    if matrix:
        inner = ", ".join(f"{k}: {v if isinstance(v, str) else canonical_json(v)}"
                          for k, v in matrix.items())
        return f"{task['node_id']} ({inner})"
    return str(task["node_id"])
