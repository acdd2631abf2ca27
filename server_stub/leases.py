"""Claims and leases: the atomic claim, renewal, expiry, and fencing of writes.

A lease lasts `ttl` seconds after its last renewal plus an offline grace; after that the run may
be claimed again (attempt + 1, new token). Until someone does, the old holder may still deliver
(offline work synced late), which takes the run back out of the queue. A run whose lease expired
`max_lost` times is not queued again: it ends Failed ("runner lost N times").
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from runner.api.protocol import ClaimedRun, ClaimResponse, Lease
from runner.document import RunStatus, run_field_op
from server_stub import runs
from server_stub.auth import Caller, hash_token, new_token
from server_stub.errors import ApiError, lease_lost
from server_stub.store.base import Conn, Row

WRITE = "write"     # diffs and logs: accepted from the last holder of a paused/finished run too
CONTROL = "control"  # start and heartbeat: only while the run is leased


@dataclass(frozen=True)
class LeaseTimes:
    """The lease TTL the runner is told, the deadline after which the run is given away, and
    how many expired leases a run survives."""

    ttl: float
    deadline: float
    max_lost: int = 3


def claim(conn: Conn, docs: runs.Documents, caller: Caller, times: LeaseTimes,
          now: float | None = None) -> ClaimResponse | None:
    """Lease the oldest claimable run whose labels the runner has (inside a transaction; on
    PostgreSQL concurrent claimers skip each other's candidate rows instead of waiting)."""
    now = time.time() if now is None else now
    expire(conn, docs, times, now)  # the reaper may not have run since a deadline passed
    row = conn.execute("SELECT id, attempt FROM runs WHERE queue = 'queued' AND "
                       + conn.dialect.labels_fit + " ORDER BY seq LIMIT 1"
                       + conn.dialect.claim_lock,
                       (json.dumps(sorted(caller.labels)),)).fetchone()
    if row is None:
        return None
    token = new_token("fl")
    digest = hash_token(token)
    attempt = int(row["attempt"]) + 1
    conn.execute("UPDATE runs SET queue = 'leased', attempt = ?, runner_id = ?, lease_hash = ?,"
                 " lease_expires = ?, revivable = 0, confirmed = 0 WHERE id = ?",
                 (attempt, caller.runner_id, digest, now + times.deadline, row["id"]))
    conn.execute("INSERT INTO leases (token_hash, run_id, attempt, runner_id, created_at)"
                 " VALUES (?,?,?,?,?)", (digest, row["id"], attempt, caller.runner_id, now))
    conn.execute("UPDATE runners SET last_seen = ? WHERE id = ?", (now, caller.runner_id))
    full = conn.execute("SELECT * FROM runs WHERE id = ?", (row["id"],)).fetchone()
    run = ClaimedRun(id=full["id"], repo=full["repo"], commit=full["commit_sha"],
                     workflow_path=full["workflow_path"], params=json.loads(full["params"]),
                     labels=json.loads(full["labels"]), attempt=attempt)
    return ClaimResponse(run=run, lease=Lease(token=token, ttl=times.ttl))


def expire(conn: Conn, docs: runs.Documents, times: LeaseTimes,
           now: float | None = None) -> int:
    """Put runs whose lease deadline passed back in the queue, or fail those that lost their
    lease `times.max_lost` times; returns how many were re-queued. (Rows another transaction
    holds are skipped: it is changing them, and the next pass sees what it did.)"""
    now = time.time() if now is None else now
    requeued = 0
    for row in conn.execute("SELECT id, lost_leases FROM runs WHERE queue = 'leased'"
                            " AND lease_expires < ?" + conn.dialect.claim_lock,
                            (now,)).fetchall():
        lost = int(row["lost_leases"]) + 1
        if lost < times.max_lost:
            conn.execute("UPDATE runs SET queue = 'queued', revivable = 1, lost_leases = ?"
                         " WHERE id = ?", (lost, row["id"]))
            requeued += 1
            continue
        runs.server_diff(conn, docs, row["id"], [
            run_field_op("status", RunStatus.FAILED.value),
            run_field_op("error", f"runner lost {lost} times (no heartbeat within the lease)"),
            run_field_op("ended_at", runs.now_iso())])
        conn.execute("UPDATE runs SET queue = 'done', lease_expires = NULL, revivable = 0,"
                     " lost_leases = ?, final = 1 WHERE id = ?", (lost, row["id"]))
    return requeued


def authorize(conn: Conn, row: Row, caller: Caller, lease: str | None,
              times: LeaseTimes, purpose: str, now: float | None = None) -> bool:
    """Check that `caller` may write to the run with `lease`; renew the lease when it is live.

    Returns True when the run is (again) leased to the caller. Raises 403 for a runner that never
    held the run, 409 `lease_lost` for a superseded or unknown lease.
    """
    now = time.time() if now is None else now
    run_id = row["id"]
    if caller.runner_id is None:
        raise ApiError(403, "forbidden", "only runners write to runs")
    if row["queue"] == "external":
        if row["runner_id"] != caller.runner_id:
            raise ApiError(403, "forbidden", f"run {run_id} was reported by another runner")
        return True
    if not lease:
        raise ApiError(400, "lease_required", f"run {run_id}: this request needs the lease token")
    digest = hash_token(lease)
    if row["lease_hash"] != digest:
        mine = conn.execute("SELECT attempt FROM leases WHERE run_id = ? AND runner_id = ?"
                            " ORDER BY attempt DESC", (run_id, caller.runner_id)).fetchone()
        if mine is None:
            raise ApiError(403, "forbidden", f"run {run_id} is not leased to this runner")
        old = conn.execute("SELECT attempt FROM leases WHERE token_hash = ? AND run_id = ?",
                           (digest, run_id)).fetchone()
        why = (f"lease of attempt {old['attempt']} was superseded by attempt {row['attempt']}"
               if old else "unknown lease token")
        raise lease_lost(run_id, why)
    if row["runner_id"] != caller.runner_id:
        raise ApiError(403, "forbidden", f"run {run_id} is not leased to this runner")
    queue = row["queue"]
    if queue == "leased" or (queue == "queued" and row["revivable"]):
        # Any write is a sign of life; a run re-queued after expiry and not claimed since is
        # taken back by its late holder (offline work synced later).
        conn.execute("UPDATE runs SET queue = 'leased', lease_expires = ?, revivable = 0"
                     + (", confirmed = 1" if purpose == CONTROL else "") + " WHERE id = ?",
                     (now + times.deadline, run_id))
        return True
    if purpose == CONTROL:
        raise lease_lost(run_id, f"the run is {queue}, not leased")
    return False


def release(conn: Conn, run_id: str, queue: str) -> None:
    """End the current lease: the run is `done`, `paused` or `queued` again. The last lease's
    hash stays so that the holder's late journal records are still accepted."""
    conn.execute("UPDATE runs SET queue = ?, lease_expires = NULL, revivable = 0 WHERE id = ?",
                 (queue, run_id))
