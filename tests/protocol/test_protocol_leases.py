"""Lease expiry, fencing and late delivery, on a private stub with a 1 s TTL + 0.5 s grace."""

from __future__ import annotations

import time

from server_stub.testing import StubProcess
from tests.helpers import wait_until
from tests.helpers.gitrepo import make_repo
from tests.protocol.api import WORKFLOW_OK, LeasedRun, Runner, Server, op_state


def _setup(stub: StubProcess) -> tuple[Server, LeasedRun]:
    """The private stub with a repository "demo", and a run of it already claimed."""
    make_repo(stub.repos_dir, "demo", {"ok.yaml": WORKFLOW_OK})
    server = Server(stub.url, stub.admin_token, stub.registration_token, stub.repos_dir)
    return server, server.leased_run("demo")


def _queue(server: Server, run_id: str) -> str:
    runs = server.admin.ok("GET", "/runs?limit=1000")["runs"]
    return str(next(r["queue"] for r in runs if r["id"] == run_id))


def test_expired_lease_is_given_away_and_the_old_one_fenced(stub: StubProcess) -> None:
    server, run = _setup(stub)
    info, labels, first, lease1 = run.created, run.labels, run.runner, run.lease
    second = server.register(labels)
    # The second runner long-polls; the reaper wakes it when the first lease's deadline passes.
    got2 = second.claim(wait=10)
    assert got2 is not None and got2["run"]["id"] == info["id"]
    assert got2["run"]["attempt"] == 2 and got2["lease"]["token"] != lease1
    lease2 = got2["lease"]["token"]
    run_id = info["id"]
    stale = first.diffs(run_id, lease1, [{"writer": f"{first.id}/a1", "seq": 1,
                                          "ops": [op_state("stale", True)]}])
    assert stale.status_code == 409 and stale.json()["error"] == "lease_lost"
    assert first.log(run_id, lease1, "t", 0, b"stale").status_code == 409
    first.api.error("POST", f"/runs/{run_id}/heartbeat", 409, "lease_lost",
                    json={"lease": lease1})
    first.api.error("POST", f"/runs/{run_id}/finish", 409, "lease_lost",
                    json={"lease": lease1, "status": "Completed"})
    fresh = second.diffs(run_id, lease2, [{"writer": f"{second.id}/a2", "seq": 1,
                                           "ops": [op_state("fresh", True)]}])
    assert fresh.status_code == 200
    assert server.admin.ok("GET", f"/runs/{run_id}")["state"] == {"fresh": True}


def test_late_writer_takes_an_unclaimed_run_back(stub: StubProcess) -> None:
    server, run = _setup(stub)
    labels, runner, lease, run_id = run.labels, run.runner, run.lease, run.id
    wait_until(lambda: _queue(server, run_id) == "queued", timeout=10,
               message="the expired run to be re-queued")
    # Offline work delivered late: accepted, and the run is leased to its holder again.
    resp = runner.diffs(run_id, lease, [{"writer": f"{runner.id}/a1", "seq": 1,
                                         "ops": [op_state("offline", 1)]}])
    assert resp.status_code == 200, resp.text
    assert _queue(server, run_id) == "leased"
    assert server.register(labels).claim() is None
    out = runner.api.ok("POST", f"/runs/{run_id}/finish",
                        json={"lease": lease, "status": "Completed"})
    assert out["queue"] == "done" and out["attempt"] == 1


def test_heartbeats_keep_the_lease(stub: StubProcess) -> None:
    server, run = _setup(stub)
    info, holder, lease = run.created, run.runner, {"lease": run.lease}
    rival = server.register(run.labels)
    end = time.monotonic() + 3.0  # twice the 1.5 s deadline
    while time.monotonic() < end:
        holder.api.ok("POST", f"/runs/{info['id']}/heartbeat", json=lease)
        assert rival.claim(wait=0.3) is None
    assert _queue(server, info["id"]) == "leased"


def test_server_restart_keeps_runs_and_leases(stub: StubProcess) -> None:
    _server, run = _setup(stub)
    info, labels, runner, lease = run.created, run.labels, run.runner, run.lease
    restarted = stub.restart()
    try:
        again = Runner(type(runner.api)(restarted.url, runner.api.token), runner.id, labels)
        resp = again.diffs(info["id"], lease, [{"writer": f"{runner.id}/a1", "seq": 1,
                                                "ops": [op_state("after", "restart")]}])
        assert resp.status_code == 200, resp.text
        admin = Server(restarted.url, restarted.admin_token, restarted.registration_token,
                       restarted.repos_dir).admin
        assert admin.ok("GET", f"/runs/{info['id']}")["state"] == {"after": "restart"}
    finally:
        restarted.stop()
