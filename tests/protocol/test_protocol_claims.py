"""Claims: labels, the long poll, confirm/heartbeat/finish, fencing by lease token."""

from __future__ import annotations

import threading
from typing import Any

from tests.protocol.api import Server, label


def _create(server: Server, repo: dict[str, str], labels: list[str],
            path: str = "ok.yaml") -> dict[str, Any]:
    return dict(server.admin.ok("POST", "/runs", 201, json={
        "repo": repo["name"], "ref": "main", "workflow_path": path, "labels": labels}))


def test_claim_answers_run_and_lease_once(server: Server, repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    info, runner, got = run.created, run.runner, run.claimed
    assert got["run"]["id"] == info["id"] and got["run"]["commit"] == repo["sha"]
    assert got["run"]["workflow_path"] == "ok.yaml" and got["run"]["attempt"] == 1
    assert got["lease"]["token"] and got["lease"]["ttl"] > 0
    assert runner.claim() is None  # 204: nothing else to claim
    listed = server.admin.ok("GET", f"/runs?repo={repo['name']}&queue=leased&limit=1000")
    mine = [r for r in listed["runs"] if r["id"] == info["id"]]
    assert mine and mine[0]["runner_id"] == runner.id and mine[0]["attempt"] == 1


def test_run_labels_must_be_a_subset_of_the_runners(server: Server,
                                                    repo: dict[str, str]) -> None:
    a, b = label(), label()
    info = _create(server, repo, [a, b])
    assert server.register([a]).claim() is None
    got = server.register([a, b, label()]).claim()
    assert got is not None and got["run"]["id"] == info["id"]


def test_long_poll_is_answered_when_a_run_is_queued(server: Server,
                                                    repo: dict[str, str]) -> None:
    lab = label()
    runner = server.register([lab])
    result: dict[str, Any] = {}
    waiting = threading.Thread(target=lambda: result.update(got=runner.claim(wait=25)))
    waiting.start()
    info = _create(server, repo, [lab])
    waiting.join(30)
    assert not waiting.is_alive()
    assert result["got"] is not None and result["got"]["run"]["id"] == info["id"]


def test_long_poll_ends_with_204(server: Server) -> None:
    assert server.register([label()]).claim(wait=0.3) is None


def test_start_heartbeat_finish(server: Server, repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    runner, got = run.runner, run.claimed
    path, lease = f"/runs/{run.id}", {"lease": run.lease}
    started = runner.api.ok("POST", f"{path}/start", json=lease)
    assert started == {"ttl": got["lease"]["ttl"], "cancel_requested": False}
    assert runner.api.ok("POST", f"{path}/heartbeat", json=lease)["cancel_requested"] is False
    runner.api.error("POST", f"{path}/heartbeat", 409, "lease_lost", json={"lease": "forged"})
    out = runner.api.ok("POST", f"{path}/finish", json={**lease, "status": "Failed"})
    assert out["queue"] == "done" and out["status"] == "Failed"
    # A resent finish is acknowledged; the lease is over for control calls.
    assert runner.api.ok("POST", f"{path}/finish", json={**lease, "status": "Failed"})[
        "queue"] == "done"
    runner.api.error("POST", f"{path}/heartbeat", 409, "lease_lost", json=lease)
    assert server.register(run.labels).claim() is None


def test_finish_needs_the_lease(server: Server, repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    runner = run.runner
    runner.api.error("POST", f"/runs/{run.id}/finish", 400, "lease_required",
                     json={"status": "Completed"})
    runner.api.error("POST", f"/runs/{run.id}/finish", 422,
                     json={"lease": "x", "status": "Exploded"})
