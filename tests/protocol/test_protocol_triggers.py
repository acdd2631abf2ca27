"""Manual triggers: a paused run is released, a trigger re-queues it for any runner."""

from __future__ import annotations

import uuid
from typing import Any

from tests.protocol.api import Runner, Server


def _pause(server: Server, repo: dict[str, str]) -> tuple[dict[str, Any], Runner, str, str]:
    """A manual-workflow run whose runner completed `prepare` and paused at `approve`."""
    run = server.leased_run(repo["name"], "manual.yaml")
    info, runner, lease = run.created, run.runner, run.lease
    prepare, approve = str(uuid.uuid4()), str(uuid.uuid4())

    def task(tid: str, node: str, status: str) -> dict[str, Any]:
        return {"op": "add", "path": f"/tasks/{tid}",
                "value": {"id": tid, "node_id": node, "status": status, "triggered": False,
                          "master": False}}

    ops = [task(prepare, "prepare", "Completed"), task(approve, "approve", "AwaitingTrigger"),
           {"op": "replace", "path": "/status", "value": "AwaitingTrigger"}]
    resp = runner.diffs(info["id"], lease, [{"writer": run.writer, "seq": 1, "ops": ops}])
    assert resp.status_code == 200, resp.text
    return info, runner, lease, approve


def test_paused_run_is_released_and_trigger_requeues_it(server: Server,
                                                        repo: dict[str, str]) -> None:
    info, runner, lease, approve = _pause(server, repo)
    out = runner.api.ok("POST", f"/runs/{info['id']}/finish",
                        json={"lease": lease, "status": "AwaitingTrigger"})
    assert out["queue"] == "paused" and out["status"] == "AwaitingTrigger"
    other = server.register(info["labels"])
    assert other.claim() is None  # paused: nobody gets it
    out = server.admin.ok("POST", f"/runs/{info['id']}/tasks/{approve}/trigger")
    assert out["queue"] == "queued"
    doc = server.admin.ok("GET", f"/runs/{info['id']}")
    assert doc["tasks"][approve]["status"] == "Pending"
    assert doc["tasks"][approve]["triggered"] is True
    got = other.claim()
    assert got is not None and got["run"]["id"] == info["id"] and got["run"]["attempt"] == 2
    # The resuming runner reads the server's document: completed work is visible.
    seen = other.api.ok("GET", f"/runs/{info['id']}")
    assert [t["status"] for t in seen["tasks"].values()].count("Completed") == 1


def test_trigger_refusals(server: Server, repo: dict[str, str]) -> None:
    info, _runner, _lease, approve = _pause(server, repo)
    path = f"/runs/{info['id']}"
    server.admin.error("POST", f"{path}/tasks/{uuid.uuid4()}/trigger", 404, "not_found")
    prepare = next(t for t, v in server.admin.ok("GET", path)["tasks"].items()
                   if v["node_id"] == "prepare")
    server.admin.error("POST", f"{path}/tasks/{prepare}/trigger", 409, "not_awaiting_trigger")
    server.admin.ok("POST", f"{path}/trigger-all")
    server.admin.error("POST", f"{path}/trigger-all", 409, "nothing_to_trigger")
    server.admin.error("POST", f"{path}/tasks/{approve}/trigger", 409, "not_awaiting_trigger")


def test_trigger_while_running_requeues_at_finish(server: Server,
                                                  repo: dict[str, str]) -> None:
    info, runner, lease, _approve = _pause(server, repo)
    out = server.admin.ok("POST", f"/runs/{info['id']}/trigger-all")
    assert out["queue"] == "leased"  # still with its runner
    out = runner.api.ok("POST", f"/runs/{info['id']}/finish",
                        json={"lease": lease, "status": "AwaitingTrigger"})
    assert out["queue"] == "queued"  # the trigger is not lost
    got = server.register(info["labels"]).claim()
    assert got is not None and got["run"]["id"] == info["id"]
