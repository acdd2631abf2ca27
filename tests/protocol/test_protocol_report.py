"""Runs executed outside the queue and reported by their runner (`ferry run` with an api
backend): idempotent creation, writes without a lease, owner-only."""

from __future__ import annotations

import uuid
from typing import Any

from runner.document import new_run
from tests.protocol.api import Server


def _doc() -> dict[str, Any]:
    workflow = {"version": "1", "nodes": [{"id": "a", "steps": [{"run": "true"}]}]}
    return new_run(workflow, name="local", params={"p": "1"},
                   created_at="2024-01-01T00:00:00Z", run_id=str(uuid.uuid4()))


def test_report_is_idempotent_and_owned(server: Server) -> None:
    runner, other = server.register(), server.register()
    doc = _doc()
    first = runner.api.ok("POST", "/runs/report", 201, json={"run": doc})
    assert first["id"] == doc["id"] and first["queue"] == "external"
    assert first["runner_id"] == runner.id and first["params"] == {"p": "1"}
    assert runner.api.ok("POST", "/runs/report", 200, json={"run": doc})["id"] == doc["id"]
    changed = {**doc, "workflow": {**doc["workflow"], "name": "x"},
               "workflow_digest": "sha256:other"}
    runner.api.error("POST", "/runs/report", 409, "conflict", json={"run": changed})
    other.api.error("POST", "/runs/report", 409, json={"run": doc})
    runner.api.error("POST", "/runs/report", 422, json={"run": {"id": "x"}})
    server.admin.error("POST", "/runs/report", 403, json={"run": doc})


def test_external_writes_need_no_lease_but_the_owner(server: Server) -> None:
    runner, other = server.register(), server.register()
    doc = _doc()
    run_id = runner.api.ok("POST", "/runs/report", 201, json={"run": doc})["id"]
    w = f"{runner.id}/local"
    ops = [{"op": "replace", "path": "/status", "value": "Running"},
           {"op": "add", "path": "/state/k", "value": "v"}]
    assert runner.diffs(run_id, None, [{"writer": w, "seq": 1, "ops": ops}]).status_code == 200
    assert runner.log(run_id, None, "t", 0, b"out\n").json() == {"offset": 4}
    assert other.diffs(run_id, None, [{"writer": "x", "seq": 1, "ops": []}]).status_code == 403
    assert other.log(run_id, None, "t", 4, b"x").status_code == 403
    fin = runner.api.ok("POST", f"/runs/{run_id}/finish", json={"status": "Completed"})
    assert fin["status"] == "Completed" and fin["queue"] == "external"
    got = server.admin.ok("GET", f"/runs/{run_id}")
    assert got["state"] == {"k": "v"} and got["status"] == "Completed" and got["ended_at"]
    runner.api.error("POST", f"/runs/{run_id}/heartbeat", 409, json={"lease": "x"})
