"""Distributed runs: the server plans the run and leases its ready tasks one by one.

A distributed run is never claimed whole. Whenever it may have changed (created, a task ended,
a trigger, a cancel, a lost lease) the server runs the engine's pure scheduler on the document
(`replan`), writes what it decided as a server diff, and keeps one job per runnable task in
`task_jobs`. A runner that claims with `tasks: true` gets one job: the task is marked Running
(attempt + 1) and leased to it alone; its start, heartbeat, diffs (which may touch only that task
and the workflow state), logs and finish carry the task's lease. The task's end re-plans the run:
dependents become ready, a `from_state` matrix grows, the run ends when nothing can run.

Every change to a run's jobs happens under the run row's lock (`runs.get_row`), so the rules
hold with any number of servers on one PostgreSQL: a job is leased to one runner, a task is
never Running twice, a Completed task is never queued again.
"""

from __future__ import annotations

import json
import time
from typing import Any

from runner.api.protocol import ClaimedRun, ClaimResponse, Lease, WireDiff
from runner.document import (
    TERMINAL_RUN,
    TERMINAL_TASK,
    RunStatus,
    TaskStatus,
    pointer_escape,
    run_field_op,
    task_field_op,
)
from runner.engine.scheduler import plan
from runner.workflow.model import Workflow
from server_stub import runs
from server_stub.auth import Caller, hash_token, new_token
from server_stub.errors import ApiError, lease_lost
from server_stub.leases import CONTROL, LeaseTimes
from server_stub.store.base import Conn, Row

_CLAIM_TRIES = 5  # candidates taken by others meanwhile before a claim gives up this round


def seed_state(doc: dict[str, Any]) -> None:
    """Create every state array the workflow declares (empty) in a new distributed run: tasks
    on different runners then append to it with `add /state/K/-`, which commutes, instead of
    each creating it from its own stale copy (the last creation would drop the others' items).
    With a state schema every append targets a declared array (`engine.state_schema`)."""
    workflow = Workflow.model_validate(doc["workflow"])
    if workflow.state is None:
        return
    state = doc.setdefault("state", {})
    for name, prop in workflow.state.entries().items():
        if prop.type == "array" and name not in state:
            state[name] = []


def replan(conn: Conn, docs: runs.Documents, run_id: str) -> bool:
    """Plan the run again (inside a transaction holding its row lock) and queue a job for every
    runnable task; returns True when something became claimable or the run ended."""
    doc = docs.get(conn, run_id)
    result = plan(Workflow.model_validate(doc["workflow"]), doc)
    now = runs.now_iso()
    ops: list[dict[str, Any]] = list(result.ops)
    for tr in result.transitions:
        if tr.old is not None and tr.new in TERMINAL_TASK:
            ops.append(task_field_op(tr.task_id, "ended_at", now))
    leased = {r["task_id"] for r in conn.execute(
        "SELECT task_id FROM task_jobs WHERE run_id = ? AND queue = 'leased'", (run_id,))}
    status = result.status
    if status in TERMINAL_RUN and leased:
        status = RunStatus.RUNNING  # a canceled run ends when its last running task has
    if doc.get("started_at") is None and status == RunStatus.RUNNING:
        ops.append(run_field_op("started_at", now))
    if doc.get("status") != status.value:
        ops.append(run_field_op("status", status.value))
    if status in TERMINAL_RUN:
        error = "canceled" if status == RunStatus.CANCELED else result.error
        ops += [run_field_op("ended_at", now), run_field_op("error", error)]
    if ops:
        runs.server_diff(conn, docs, run_id, ops)
    runnable = [t for t in result.runnable if t not in leased]
    if runnable:
        conn.execute("DELETE FROM task_jobs WHERE run_id = ? AND queue = 'queued' AND task_id"
                     f" NOT IN ({','.join('?' * len(runnable))})", (run_id, *runnable))
    else:
        conn.execute("DELETE FROM task_jobs WHERE run_id = ? AND queue = 'queued'", (run_id,))
    queued = {r["task_id"] for r in conn.execute(
        "SELECT task_id FROM task_jobs WHERE run_id = ? AND queue = 'queued'", (run_id,))}
    labels = runs.get_row(conn, run_id)["labels"]
    new = [t for t in runnable if t not in queued]
    for task_id in new:  # in the scheduler's order: dependency order, then creation order
        conn.execute("INSERT INTO task_jobs (run_id, task_id, labels, queue) VALUES"
                     " (?, ?, ?, 'queued') ON CONFLICT (run_id, task_id) DO UPDATE SET"
                     " queue = 'queued', runner_id = NULL, lease_hash = NULL,"
                     " lease_expires = NULL, confirmed = 0", (run_id, task_id, labels))
    if status in TERMINAL_RUN:
        conn.execute("UPDATE runs SET queue = 'done', final = 1 WHERE id = ?", (run_id,))
        return True
    idle = not leased and not runnable
    queue = "paused" if idle and status == RunStatus.AWAITING_TRIGGER else "distributed"
    conn.execute("UPDATE runs SET queue = ? WHERE id = ?", (queue, run_id))
    return bool(new)


def claim(conn: Conn, docs: runs.Documents, caller: Caller, times: LeaseTimes,
          now: float | None = None) -> ClaimResponse | None:
    """Lease the oldest queued task job whose run's labels the runner has."""
    now = time.time() if now is None else now
    expire(conn, docs, times, now)
    labels = json.dumps(sorted(caller.labels))
    for _ in range(_CLAIM_TRIES):
        pick = conn.execute("SELECT run_id FROM task_jobs WHERE queue = 'queued' AND "
                            + conn.dialect.labels_fit + " ORDER BY seq LIMIT 1",
                            (labels,)).fetchone()
        if pick is None:
            return None
        row = runs.get_row(conn, pick["run_id"])  # the run's lock: its jobs change under it
        job = conn.execute("SELECT * FROM task_jobs WHERE run_id = ? AND queue = 'queued'"
                           " ORDER BY seq LIMIT 1", (row["id"],)).fetchone()
        if job is not None:
            return _lease(conn, docs, caller, times, row, job, now)
    return None


def _lease(conn: Conn, docs: runs.Documents, caller: Caller, times: LeaseTimes, row: Row,
           job: Row, now: float) -> ClaimResponse:
    run_id, task_id = row["id"], job["task_id"]
    token = new_token("fl")
    digest = hash_token(token)
    doc = docs.get(conn, run_id)
    task = doc["tasks"][task_id]
    attempt = int(task.get("attempt") or 0) + 1
    runs.server_diff(conn, docs, run_id, [
        task_field_op(task_id, "status", TaskStatus.RUNNING.value),
        task_field_op(task_id, "attempt", attempt),
        task_field_op(task_id, "started_at", runs.now_iso()),
        task_field_op(task_id, "ended_at", None), task_field_op(task_id, "step", None),
        task_field_op(task_id, "error", None)])
    conn.execute("UPDATE task_jobs SET queue = 'leased', attempt = ?, runner_id = ?,"
                 " lease_hash = ?, lease_expires = ?, confirmed = 0 WHERE run_id = ? AND"
                 " task_id = ?", (attempt, caller.runner_id, digest, now + times.deadline,
                                  run_id, task_id))
    conn.execute("INSERT INTO leases (token_hash, run_id, attempt, runner_id, created_at,"
                 " task_id) VALUES (?,?,?,?,?,?)",
                 (digest, run_id, attempt, caller.runner_id, now, task_id))
    conn.execute("UPDATE runners SET last_seen = ? WHERE id = ?", (now, caller.runner_id))
    run = ClaimedRun(id=run_id, repo=row["repo"], commit=row["commit_sha"],
                     workflow_path=row["workflow_path"], params=json.loads(row["params"]),
                     labels=json.loads(row["labels"]), attempt=attempt)
    return ClaimResponse(run=run, lease=Lease(token=token, ttl=times.ttl), task=task_id)


def expire(conn: Conn, docs: runs.Documents, times: LeaseTimes, now: float | None = None) -> int:
    """Re-queue tasks whose lease deadline passed (the task back to Pending, `interrupted`), or
    fail those that lost `times.max_lost` leases; returns how many runs changed."""
    now = time.time() if now is None else now
    changed = 0
    stale = {r["run_id"] for r in conn.execute(
        "SELECT run_id FROM task_jobs WHERE queue = 'leased' AND lease_expires < ?", (now,))}
    for run_id in stale:
        runs.get_row(conn, run_id)
        for job in conn.execute("SELECT * FROM task_jobs WHERE run_id = ? AND queue = 'leased'"
                                " AND lease_expires < ?", (run_id, now)).fetchall():
            _lost(conn, docs, run_id, job, times)
        replan(conn, docs, run_id)
        changed += 1
    return changed


def _lost(conn: Conn, docs: runs.Documents, run_id: str, job: Row, times: LeaseTimes) -> None:
    task_id = job["task_id"]
    lost = int(job["lost_leases"]) + 1
    task = docs.get(conn, run_id)["tasks"].get(task_id) or {}
    if lost < times.max_lost:
        ops = [task_field_op(task_id, "status", TaskStatus.PENDING.value),
               task_field_op(task_id, "interrupted", int(task.get("interrupted", 0)) + 1),
               task_field_op(task_id, "error", "interrupted: its runner stopped")]
    else:
        ops = [task_field_op(task_id, "status", TaskStatus.FAILED.value),
               task_field_op(task_id, "ended_at", runs.now_iso()),
               task_field_op(task_id, "error", f"runner lost {lost} times (no heartbeat within "
                                               "the lease)")]
    if task.get("status") == TaskStatus.RUNNING.value:
        runs.server_diff(conn, docs, run_id, ops)
    conn.execute("UPDATE task_jobs SET queue = 'done', lease_expires = NULL, lost_leases = ?"
                 " WHERE run_id = ? AND task_id = ?", (lost, run_id, task_id))


def authorize(conn: Conn, row: Row, caller: Caller, lease: str | None, times: LeaseTimes,
              purpose: str, now: float | None = None) -> str:
    """The task whose live lease `lease` is (renewed now); 403 for a runner that never held a
    task of the run, 409 `lease_lost` for a lease that ended or was superseded."""
    now = time.time() if now is None else now
    run_id = row["id"]
    if caller.runner_id is None:
        raise ApiError(403, "forbidden", "only runners write to runs")
    if not lease:
        raise ApiError(400, "lease_required", f"run {run_id}: this request needs the lease token")
    digest = hash_token(lease)
    held = conn.execute("SELECT task_id, attempt, runner_id FROM leases WHERE token_hash = ?"
                        " AND run_id = ?", (digest, run_id)).fetchone()
    if held is None or held["runner_id"] != caller.runner_id:
        mine = conn.execute("SELECT 1 FROM leases WHERE run_id = ? AND runner_id = ?",
                            (run_id, caller.runner_id)).fetchone()
        if mine is None or held is not None:
            raise ApiError(403, "forbidden", f"run {run_id} is not leased to this runner")
        raise lease_lost(run_id, "unknown lease token")
    job = conn.execute("SELECT * FROM task_jobs WHERE run_id = ? AND task_id = ?",
                       (run_id, held["task_id"])).fetchone()
    if job is None or job["lease_hash"] != digest or job["queue"] != "leased":
        why = (f"task {held['task_id']}: lease of attempt {held['attempt']} ended"
               if job is None or job["lease_hash"] != digest
               else f"task {held['task_id']} is {job['queue']}, not leased")
        raise lease_lost(run_id, why)
    conn.execute("UPDATE task_jobs SET lease_expires = ?" + (", confirmed = 1" if purpose
                                                              == CONTROL else "")
                 + " WHERE run_id = ? AND task_id = ?", (now + times.deadline, run_id,
                                                         held["task_id"]))
    return str(held["task_id"])


def check_scope(task_id: str, diffs: list[WireDiff]) -> None:
    """A task's writer changes only its task and the workflow state (disjoint from the other
    tasks' writers); 403 naming the first path outside."""
    mine = f"/tasks/{pointer_escape(task_id)}"
    for index, diff in enumerate(diffs):
        for op in diff.ops:
            for key in ("path", "from"):
                target = op.get(key)
                if not isinstance(target, str) or (key == "from" and op.get("op") != "move"):
                    continue
                if not (target == mine or target.startswith(mine + "/")
                        or target == "/state" or target.startswith("/state/")):
                    raise ApiError(403, "forbidden", f"diffs[{index}]: a task's lease may change "
                                   f"only {mine} and /state, not '{target}'", applied=0)


def finish(conn: Conn, docs: runs.Documents, run_id: str, task_id: str) -> bool:
    """The runner handed its task back: its job ends and the run is planned again (True when
    something became claimable or the run ended). A task still Running was not recorded by its
    runner: it fails, saying so."""
    task = docs.get(conn, run_id)["tasks"].get(task_id) or {}
    if task.get("status") == TaskStatus.RUNNING.value:
        runs.server_diff(conn, docs, run_id, [
            task_field_op(task_id, "status", TaskStatus.FAILED.value),
            task_field_op(task_id, "ended_at", runs.now_iso()),
            task_field_op(task_id, "error", "its runner finished without recording its end")])
    conn.execute("UPDATE task_jobs SET queue = 'done', lease_expires = NULL WHERE run_id = ?"
                 " AND task_id = ?", (run_id, task_id))
    return replan(conn, docs, run_id)


def cancel(conn: Conn, docs: runs.Documents, run_id: str) -> bool:
    """Cancel a distributed run: tasks claimed but not started are released (Pending again),
    the rest is `replan`'s: not started -> WontDo, the run Canceled once no task runs (running
    ones see `cancel_requested` in their next heartbeat). Returns whether the run ended."""
    for job in conn.execute("SELECT task_id FROM task_jobs WHERE run_id = ? AND queue ="
                            " 'leased' AND confirmed = 0", (run_id,)).fetchall():
        runs.server_diff(conn, docs, run_id, [
            task_field_op(job["task_id"], "status", TaskStatus.PENDING.value)])
        conn.execute("UPDATE task_jobs SET queue = 'done', lease_expires = NULL WHERE"
                     " run_id = ? AND task_id = ?", (run_id, job["task_id"]))
    replan(conn, docs, run_id)
    return bool(runs.get_row(conn, run_id)["final"])


def finish_lease(conn: Conn, docs: runs.Documents, row: Row, caller: Caller, lease: str | None,
                 times: LeaseTimes) -> bool:
    """`POST /runs/{id}/finish` with a task's lease: the task's job ends (a resent finish of a
    job already ended by this lease changes nothing); True when the queue changed."""
    if lease:
        job = conn.execute("SELECT queue FROM task_jobs WHERE run_id = ? AND lease_hash = ?",
                           (row["id"], hash_token(lease))).fetchone()
        if job is not None and job["queue"] == "done":
            return False
    task_id = authorize(conn, row, caller, lease, times, "write")
    return finish(conn, docs, row["id"], task_id)
