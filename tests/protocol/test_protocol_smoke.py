"""Smoke: the happy path of a queued run end to end over real HTTP."""

from __future__ import annotations

from tests.protocol.api import Server, op_state


def test_queued_run_end_to_end(server: Server, repo: dict[str, str]) -> None:
    admin = server.admin
    run = server.leased_run(repo["name"], params={"who": "world"})
    info, runner, got, lease, run_id = run.created, run.runner, run.claimed, run.lease, run.id
    assert info["commit"] == repo["sha"] and info["queue"] == "queued"
    assert got["run"]["id"] == info["id"]
    assert runner.api.ok("POST", f"/runs/{run_id}/start", json={"lease": lease})[
        "cancel_requested"] is False
    resp = runner.diffs(run_id, lease, [{"writer": run.writer, "seq": 1,
                                         "ops": [op_state("x", 1)]}])
    assert resp.status_code == 200, resp.text
    assert runner.log(run_id, lease, "t1", 0, b"hello\n").json() == {"offset": 6}
    done = runner.api.ok("POST", f"/runs/{run_id}/finish",
                         json={"lease": lease, "status": "Completed"})
    assert done["queue"] == "done" and done["status"] == "Completed"
    doc = admin.ok("GET", f"/runs/{run_id}")
    assert doc["state"] == {"x": 1} and doc["status"] == "Completed" and doc["ended_at"]
    assert admin.call("GET", f"/runs/{run_id}/logs/t1").content == b"hello\n"
