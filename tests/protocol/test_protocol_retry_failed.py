"""`POST /runs/{id}/retry-failed` (admin): a Failed run's failed and blocked tasks go back to
Pending, its completed ones stay, and the run is queued again for any runner (a new attempt);
anything but a finished Failed run is a 409."""

from __future__ import annotations

import uuid
from typing import Any

from tests.protocol.api import Server


def _task(tid: str, node: str, status: str) -> dict[str, Any]:
    return {"op": "add", "path": f"/tasks/{tid}",
            "value": {"id": tid, "node_id": node, "status": status, "master": False,
                      "error": "boom" if status == "Failed" else None, "ended_at": "t",
                      "step": 0}}


def test_retry_failed_requeues_a_failed_run_keeping_completed_tasks(
        server: Server, repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"], "manual.yaml")
    done, failed, blocked = (str(uuid.uuid4()) for _ in range(3))
    ops = [_task(done, "prepare", "Completed"), _task(failed, "approve", "Failed"),
           _task(blocked, "approve", "Blocked"),
           {"op": "replace", "path": "/status", "value": "Failed"}]
    assert run.runner.diffs(run.id, run.lease,
                            [{"writer": run.writer, "seq": 1, "ops": ops}]).status_code == 200
    # not finished yet: a run its runner still holds is not re-run
    server.admin.error("POST", f"/runs/{run.id}/retry-failed", 409, "not_failed")
    run.runner.api.ok("POST", f"/runs/{run.id}/finish",
                      json={"lease": run.lease, "status": "Failed"})
    run.runner.api.error("POST", f"/runs/{run.id}/retry-failed", 403)
    out = server.admin.ok("POST", f"/runs/{run.id}/retry-failed")
    assert out["queue"] == "queued" and out["status"] == "Pending"
    doc = server.admin.ok("GET", f"/runs/{run.id}")
    assert {t: doc["tasks"][t]["status"] for t in (done, failed, blocked)} == {
        done: "Completed", failed: "Pending", blocked: "Pending"}
    assert doc["tasks"][failed]["error"] is None and doc["error"] is None
    again = server.register(run.labels).claim()
    assert again is not None and again["run"]["id"] == run.id
    assert again["run"]["attempt"] == run.claimed["run"]["attempt"] + 1
    server.admin.error("POST", f"/runs/{run.id}/retry-failed", 409, "not_failed")
    server.admin.error("POST", f"/runs/{uuid.uuid4()}/retry-failed", 404)

