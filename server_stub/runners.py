"""What runners do (runner tokens): register, claim, confirm, heartbeat, write diffs and logs,
finish, and report runs they execute outside the queue."""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from typing import Any

from pydantic import SecretStr

from runner.api.protocol import (
    RUN_ID_PATTERN,
    ClaimResponse,
    DiffAck,
    DiffBatch,
    FinishRequest,
    HeartbeatResponse,
    LogAck,
    LogChunk,
    RegisterRequest,
    RegisterResponse,
    RunInfo,
)
from runner.document import (
    TERMINAL_RUN,
    RunStatus,
    TaskStatus,
    new_id,
    patch_log_id,
    run_field_op,
)
from server_stub import admin_store, distribute, leases, runs
from server_stub.auth import Caller, hash_token, new_token
from server_stub.bounds import check_document
from server_stub.core import Core
from server_stub.diffs import apply_batch
from server_stub.errors import ApiError, bad_request
from server_stub.store.base import Conn

_REPORT_REQUIRED = ("id", "workflow", "status", "tasks", "params")
_RUN_ID = re.compile(RUN_ID_PATTERN)


def register(core: Core, req: RegisterRequest) -> RegisterResponse:
    """A new runner with its own token (stored hashed)."""
    runner_id, token = new_id(), new_token("ft")
    with core.tx() as conn:
        conn.execute("INSERT INTO runners (id, name, labels, token_hash, created_at, last_seen)"
                     " VALUES (?,?,?,?,?,?)", (runner_id, req.name, json.dumps(sorted(
                         set(req.labels))), hash_token(token), runs.now_iso(), time.time()))
    return RegisterResponse(runner_id=runner_id, token=token)


def claim_once(core: Core, caller: Caller, labels: list[str],
               tasks: bool = False) -> ClaimResponse | None:
    """One atomic claim attempt with the labels the runner offers (limited to its registered
    labels when it registered any); with `tasks`, a task of a distributed run comes first."""
    offered = frozenset(labels) if labels else caller.labels
    if caller.labels and not offered <= caller.labels:
        extra = ", ".join(sorted(offered - caller.labels))
        raise ApiError(403, "forbidden", f"labels not registered for this runner: {extra}")
    with core.tx() as conn:
        admin_store.gate(conn, caller.runner_id)  # revoked or drained since the poll began
        try:
            who = Caller(caller.kind, caller.runner_id, offered)
            got = distribute.claim(conn, core.docs, who, core.times) if tasks else None
            if got is None:
                got = leases.claim(conn, core.docs, who, core.times)
            if got is not None:  # secrets leave the server only here, with the lease
                got.secrets = {k: SecretStr(v) for k, v in
                               core.secrets.for_repo(conn, got.run.repo).items()}
                got.secret_params = {k: SecretStr(v) for k, v in
                                     core.secrets.for_run(conn, got.run.id).items()}
            return got
        except BaseException:
            core.docs.clear()  # expiry may have patched cached documents before the rollback
            raise


def expire_leases(core: Core) -> int:
    """Re-queue runs and tasks whose lease deadline passed (or fail those that lost too many)."""
    with core.tx() as conn:
        try:
            return (leases.expire(conn, core.docs, core.times)
                    + distribute.expire(conn, core.docs, core.times))
        except BaseException:
            core.docs.clear()
            raise


def control(core: Core, caller: Caller, run_id: str, lease: str) -> HeartbeatResponse:
    """Confirm a claim or renew a lease; tells the runner whether cancel was requested."""
    with core.tx() as conn:
        row = runs.get_row(conn, run_id)
        if row["queue"] == "external":
            raise ApiError(409, "not_leased", f"run {run_id} is reported, not leased")
        if row["distributed"]:
            distribute.authorize(conn, row, caller, lease, core.times, leases.CONTROL)
        else:
            leases.authorize(conn, row, caller, lease, core.times, leases.CONTROL)
        return HeartbeatResponse(ttl=core.config.lease_ttl,
                                 cancel_requested=bool(row["cancel_requested"]))


def post_diffs(core: Core, caller: Caller, run_id: str, batch: DiffBatch) -> DiffAck:
    """Apply a batch; the accepted prefix is committed even when a later diff is refused."""
    refusal: ApiError | None = None
    with core.tx(run_id) as conn:
        row = runs.get_row(conn, run_id)
        if row["distributed"]:
            task = distribute.authorize(conn, row, caller, batch.lease, core.times, leases.WRITE)
            distribute.check_scope(task, batch.diffs)
        else:
            leases.authorize(conn, row, caller, batch.lease, core.times, leases.WRITE)
        ack, refusal = apply_batch(conn, core.docs, run_id, batch.diffs, core.limits,
                                   final=bool(row["final"]))
    if refusal is not None:
        raise refusal
    return ack


def post_log(core: Core, caller: Caller, run_id: str, chunk: LogChunk) -> LogAck:
    """Append log bytes at the chunk's offset."""
    try:
        data = base64.b64decode(chunk.data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request(f"data is not valid base64: {exc}", "bad_base64") from exc
    with core.tx() as conn:
        row = runs.get_row(conn, run_id)
        if row["distributed"]:
            task = distribute.authorize(conn, row, caller, chunk.lease, core.times,
                                        leases.WRITE)
            if chunk.task not in (task, patch_log_id(task)):  # its own logs, as its diffs
                raise ApiError(403, "forbidden", f"a task's lease may append only to its "
                                                 f"task's logs ({task}, {patch_log_id(task)}),"
                                                 f" not to {chunk.task}")
        else:
            leases.authorize(conn, row, caller, chunk.lease, core.times, leases.WRITE)
        return LogAck(offset=core.logs.append(conn, run_id, chunk.task, chunk.offset, data))


def _has_triggered_pending(doc: dict[str, Any]) -> bool:
    return any(t.get("status") == TaskStatus.PENDING.value and t.get("triggered")
               and not t.get("master") for t in (doc.get("tasks") or {}).values())


def finish(core: Core, caller: Caller, run_id: str, req: FinishRequest) -> tuple[RunInfo, bool]:
    """The runner hands the run back: done, or paused for triggers (re-queued at once when a
    trigger arrived while it ran). Returns the run and whether it was re-queued."""
    with core.tx(run_id) as conn:
        row = runs.get_row(conn, run_id)
        if row["distributed"]:  # a task's lease: the task ends, the run goes on
            changed = distribute.finish_lease(conn, core.docs, row, caller, req.lease,
                                              core.times)
            return runs.to_info(runs.get_row(conn, run_id)), changed
        leased = leases.authorize(conn, row, caller, req.lease, core.times, leases.WRITE)
        external = row["queue"] == "external"
        if not leased and not external:
            if row["queue"] in ("done", "paused"):
                return runs.to_info(row), False  # a resent finish: already handed back
            raise leases.lease_lost(run_id, f"the run is {row['queue']}, not leased")
        doc = core.docs.get(conn, run_id)
        if row["final"]:
            return runs.to_info(row), False  # its outcome is recorded: terminal is final
        ops = []
        if doc.get("status") != req.status:
            ops.append(run_field_op("status", req.status))
        if RunStatus(req.status) in TERMINAL_RUN and not doc.get("ended_at"):
            ops.append(run_field_op("ended_at", runs.now_iso()))
        if not external:  # pull_request nodes: their tasks' branches, recorded on the run
            made = _branches(core, conn, row, doc, run_id)
            if made:
                ops.append({"op": "add", "path": "/pull_requests",
                            "value": [*(doc.get("pull_requests") or []), *made]})
        if ops:
            runs.server_diff(conn, core.docs, run_id, ops)
        if RunStatus(req.status) in TERMINAL_RUN:
            conn.execute("UPDATE runs SET final = 1 WHERE id = ?", (run_id,))
        requeue = False
        if not external:
            if req.status != RunStatus.AWAITING_TRIGGER.value:
                queue = "done"
            else:
                requeue = _has_triggered_pending(doc)
                queue = "queued" if requeue else "paused"
            leases.release(conn, run_id, queue)
        return runs.to_info(runs.get_row(conn, run_id)), requeue


def _branches(core: Core, conn: Conn, row: Any, doc: dict[str, Any],
              run_id: str) -> list[dict[str, Any]]:
    """New branches of the run's `pull_request` tasks (`server_stub.branches`), inside the
    finish's transaction."""
    from server_stub.branches import new_branches

    if not any(isinstance(n, dict) and n.get("pull_request")
               for n in (doc.get("workflow") or {}).get("nodes") or []):
        return []
    repo = core.repos.locate(row["repo"])
    return new_branches(repo, row["commit_sha"], doc,
                        lambda log_id: core.logs.read(conn, run_id, log_id, 0))


def report(core: Core, caller: Caller, doc: dict[str, Any]) -> tuple[RunInfo, bool]:
    """Create a run the runner executes outside the queue; idempotent for the same id and
    workflow digest. Returns the run and whether it was created now."""
    missing = [k for k in _REPORT_REQUIRED if k not in doc]
    if missing:
        raise ApiError(422, "invalid_request", f"run: missing {', '.join(missing)}")
    if not isinstance(doc["id"], str) or not _RUN_ID.fullmatch(doc["id"]):
        raise ApiError(422, "invalid_request", "run.id must be a UUID (lower case)")
    if not isinstance(doc["tasks"], dict) or not isinstance(doc["workflow"], dict):
        raise ApiError(422, "invalid_request", "run.tasks and run.workflow must be objects")
    if not isinstance(doc["status"], str):
        raise ApiError(422, "invalid_request", "run.status must be a string")
    params = doc["params"]
    if not isinstance(params, dict):  # typed by the workflow's params.schema
        raise ApiError(422, "invalid_request", "run.params must map names to values")
    text = json.dumps(doc, separators=(",", ":"))
    check_document(doc, text, {("state",), ("tasks",)}, core.limits, 0)
    with core.tx(doc["id"]) as conn:
        row = conn.execute("SELECT * FROM runs WHERE id = ?" + conn.dialect.lock,
                           (doc["id"],)).fetchone()
        if row is not None:
            if row["runner_id"] != caller.runner_id or row["queue"] != "external" \
                    or row["workflow_digest"] != str(doc.get("workflow_digest", "")):
                raise ApiError(409, "conflict", f"run {doc['id']} exists with other contents")
            return runs.to_info(row), False
        runs.insert(conn, doc, repo=str(doc.get("repo") or ""),
                    commit=str(doc.get("commit") or ""),
                    workflow_path=str(doc.get("workflow_path") or ""), labels=[],
                    queue="external", runner_id=caller.runner_id)
        return runs.to_info(runs.get_row(conn, doc["id"])), True
