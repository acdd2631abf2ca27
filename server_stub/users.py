"""What users do with runs (admin token): create, list, read, cancel, trigger, read logs."""

from __future__ import annotations

import json
import posixpath
import time
from pathlib import PurePosixPath
from typing import Any

from runner.api.protocol import CreateRunRequest, RunInfo
from runner.document import (
    RunStatus,
    TaskStatus,
    new_run,
    patch_log_id,
    patch_order,
    pointer_escape,
    retry_failed_ops,
    run_field_op,
)
from server_stub import admin_store, distribute, runs
from server_stub.admin_store import API_ACTOR
from server_stub.auth import ADMIN, Caller
from server_stub.core import Core
from server_stub.errors import ApiError, not_found
from server_stub.store.base import Conn, Row
from server_stub.validation import required_labels, validated_run

MAX_WORKFLOW_BYTES = 4 * 1024 * 1024


def create_run(core: Core, req: CreateRunRequest, who: str = API_ACTOR) -> RunInfo:
    """Resolve the ref, validate the workflow at that commit, queue the run."""
    commit = core.repos.resolve(req.repo, req.ref)
    text = core.repos.blob(req.repo, commit, req.workflow_path)
    if len(text) > MAX_WORKFLOW_BYTES:
        raise ApiError(422, "invalid_workflow", f"{req.workflow_path}: the file is larger than "
                       f"{MAX_WORKFLOW_BYTES} bytes")
    folder = posixpath.dirname(req.workflow_path)

    def exists(rel: str) -> bool:  # in the workflow's directory, at the run's commit
        return core.repos.is_file(req.repo, commit, posixpath.normpath(
            posixpath.join(folder, rel)))

    checked = validated_run(text, req.workflow_path, req.params, strict=req.strict,
                            files=exists)
    workflow = checked.workflow
    # a run with codemod steps goes only to runners that have the Codemod CLI
    labels = [*req.labels, *(x for x in required_labels(workflow) if x not in req.labels)]
    # as `ferry run` names it: the workflow's name, else the file name without its extension
    name = str(workflow.get("name") or PurePosixPath(req.workflow_path).stem)
    # Params the workflow declares secret are kept encrypted, never in the document.
    hidden = checked.secret
    doc = new_run(workflow, name=name, params=checked.params, created_at=runs.now_iso(),
                  workflow_path=req.workflow_path)
    if checked.warnings:  # kept with the run: `ferry status` and the runner show them
        doc["warnings"] = checked.warnings
    if req.distributed:
        distribute.seed_state(doc)
    with core.tx(doc["id"]) as conn:
        runs.insert(conn, doc, repo=req.repo, commit=commit, workflow_path=req.workflow_path,
                    labels=labels, queue="distributed" if req.distributed else "queued",
                    distributed=bool(req.distributed))
        if req.distributed:  # its first tasks are queued now
            distribute.replan(conn, core.docs, doc["id"])
        core.secrets.put_run(conn, doc["id"], hidden)
        admin_store.audit(conn, who, "create", run_id=doc["id"], at=doc["created_at"],
                          detail=f"{req.repo}@{req.ref} ({commit[:12]}) {req.workflow_path}")
        return runs.to_info(runs.get_row(conn, doc["id"]))


def may_read(conn: Conn, row: Row, caller: Caller) -> None:
    """Admins read every run; a runner only the runs it has held or reported."""
    if caller.kind == ADMIN or row["runner_id"] == caller.runner_id:
        return
    held = conn.execute("SELECT 1 FROM leases WHERE run_id = ? AND runner_id = ?",
                        (row["id"], caller.runner_id)).fetchone()
    if held is None:
        raise ApiError(403, "forbidden", f"run {row['id']} was never leased to this runner")


def get_doc(core: Core, caller: Caller, run_id: str, *, with_history: bool = False) -> str:
    """The materialized document as JSON text, optionally with its diff history (`history`)."""
    with core.tx() as conn:
        row = runs.get_row(conn, run_id, lock=False)
        may_read(conn, row, caller)
        if not with_history:
            return str(row["doc"])
        doc = json.loads(row["doc"])
        doc["history"] = runs.history(conn, run_id)
        return json.dumps(doc, separators=(",", ":"))


def list_runs(core: Core, caller: Caller, *, status: str | None, repo: str | None,
              queue: str | None, limit: int) -> list[RunInfo]:
    """Most recent first; a runner's list holds only the runs it may read (`may_read`)."""
    owner = None if caller.kind == ADMIN else caller.runner_id
    with core.tx() as conn:
        return [runs.to_info(r) for r in runs.list_rows(conn, status=status, repo=repo,
                                                        queue=queue, limit=limit, owner=owner)]


def nobody_runs(row: Row, now: float) -> bool:
    """Whether no runner executes the run: queued, paused, or leased but never confirmed (no
    start or heartbeat yet) or past its lease deadline."""
    if row["queue"] in ("queued", "paused"):
        return True
    return row["queue"] == "leased" and (not row["confirmed"] or row["lease_expires"] < now)


def cancel(core: Core, run_id: str, who: str = API_ACTOR) -> tuple[RunInfo, bool]:
    """Request cancellation; a run nobody executes now is Canceled at once (and never handed
    out again: its holder's next start or heartbeat gets `lease_lost`). Returns the run and
    whether the queue changed."""
    with core.tx(run_id) as conn:
        row = runs.get_row(conn, run_id)
        if row["queue"] == "done":
            raise ApiError(409, "already_finished", f"run {run_id} already ended "
                           f"({row['status']})")
        if row["distributed"]:
            runs.server_diff(conn, core.docs, run_id, [run_field_op("cancel_requested", True)])
            ended = distribute.cancel(conn, core.docs, run_id)
            return runs.to_info(runs.get_row(conn, run_id)), ended
        ops = [run_field_op("cancel_requested", True)]
        idle = nobody_runs(row, time.time())
        if idle:
            ops += [run_field_op("status", RunStatus.CANCELED.value),
                    run_field_op("ended_at", runs.now_iso())]
        runs.server_diff(conn, core.docs, run_id, ops)
        if idle:
            conn.execute("UPDATE runs SET queue = 'done', lease_expires = NULL, revivable = 0,"
                         " final = 1 WHERE id = ?", (run_id,))
        admin_store.audit(conn, who, "cancel", run_id=run_id, at=runs.now_iso(),
                          detail="canceled at once (nobody ran it)" if idle
                          else "cancel requested from its runner")
        return runs.to_info(runs.get_row(conn, run_id)), idle


def trigger(core: Core, run_id: str, task_ids: list[str] | None,
            who: str = API_ACTOR) -> tuple[RunInfo, bool]:
    """Mark AwaitingTrigger tasks Pending + triggered (None = all of them); a paused run goes
    back to the queue. Returns the run and whether it was re-queued."""
    with core.tx(run_id) as conn:
        row = runs.get_row(conn, run_id)
        if row["queue"] == "done":
            raise ApiError(409, "already_finished", f"run {run_id} already ended "
                           f"({row['status']})")
        doc = core.docs.get(conn, run_id)
        tasks: dict[str, Any] = doc.get("tasks") or {}
        waiting = [t for t, v in tasks.items()
                   if v.get("status") == TaskStatus.AWAITING_TRIGGER.value]
        everything = task_ids is None
        if task_ids is None:
            if not waiting:
                raise ApiError(409, "nothing_to_trigger",
                               f"run {run_id} has no task awaiting a trigger")
            task_ids = waiting
        for task_id in task_ids:
            if task_id not in tasks:
                raise not_found("task", task_id)
            if task_id not in waiting:
                raise ApiError(409, "not_awaiting_trigger", f"task {task_id} is "
                               f"{tasks[task_id].get('status')}, not AwaitingTrigger")
        ops: list[dict[str, Any]] = []
        for task_id in task_ids:
            base = f"/tasks/{pointer_escape(task_id)}"
            ops += [{"op": "replace", "path": f"{base}/status",
                     "value": TaskStatus.PENDING.value},
                    {"op": "replace", "path": f"{base}/triggered", "value": True}]
        if row["distributed"]:  # the server plans it: the triggered tasks are queued now
            runs.server_diff(conn, core.docs, run_id, ops)
            requeue = distribute.replan(conn, core.docs, run_id)
            return runs.to_info(runs.get_row(conn, run_id)), requeue
        requeue = row["queue"] == "paused"
        if requeue:
            ops.append(run_field_op("status", RunStatus.PENDING.value))
        runs.server_diff(conn, core.docs, run_id, ops)
        if requeue:
            conn.execute("UPDATE runs SET queue = 'queued', revivable = 0, lease_expires = NULL"
                         " WHERE id = ?", (run_id,))
        names = ", ".join(f"{tasks[t].get('node_id')} ({t})" for t in task_ids)
        admin_store.audit(conn, who, "trigger-all" if everything else "trigger", run_id=run_id,
                          at=runs.now_iso(), detail=names)
        return runs.to_info(runs.get_row(conn, run_id)), requeue


def retry_failed(core: Core, run_id: str, who: str = API_ACTOR) -> RunInfo:
    """A Failed run's failed and blocked tasks back to Pending, the run back to the queue (a
    new attempt: the runner that claims it resumes from the document); 409 unless Failed."""
    with core.tx(run_id) as conn:
        row = runs.get_row(conn, run_id)
        doc = core.docs.get(conn, run_id)
        if row["queue"] != "done" or doc.get("status") != RunStatus.FAILED.value:
            raise ApiError(409, "not_failed", f"run {run_id} is {doc.get('status')}: only a "
                           "Failed run's failed tasks can be run again")
        ops, reset = retry_failed_ops(doc)
        runs.server_diff(conn, core.docs, run_id, ops)
        conn.execute("UPDATE runs SET queue = 'queued', final = 0, revivable = 0,"
                     " lease_expires = NULL WHERE id = ?", (run_id,))
        admin_store.audit(conn, who, "retry-failed", run_id=run_id, at=runs.now_iso(),
                          detail=f"{len(reset)} task(s) to run again")
        return runs.to_info(runs.get_row(conn, run_id))


def read_log(core: Core, caller: Caller, run_id: str, task: str, offset: int) -> bytes:
    """A task's log from `offset`."""
    with core.tx() as conn:
        may_read(conn, runs.get_row(conn, run_id, lock=False), caller)
        return core.logs.read(conn, run_id, task, offset)


def read_patch(core: Core, caller: Caller, run_id: str, task_id: str | None) -> bytes:
    """The run's change as one patch: its tasks' patches in the order they ended (one task's
    with `task_id`; 404 for a task the run does not have)."""
    with core.tx() as conn:
        row = runs.get_row(conn, run_id, lock=False)
        may_read(conn, row, caller)
        doc = json.loads(row["doc"])  # read as stored: the cache is for writers
        if task_id is not None and task_id not in (doc.get("tasks") or {}):
            raise not_found("task", task_id)
        return b"".join(core.logs.read(conn, run_id, patch_log_id(tid), 0)
                        for tid in patch_order(doc, task_id))
