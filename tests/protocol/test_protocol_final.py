"""Runs that end stay ended: terminal states are final against late diffs, a cancel of a run no
runner executes lands at once, and a run whose lease keeps expiring ends Failed."""

from __future__ import annotations

from typing import Any

import pytest

from server_stub.testing import StubProcess
from tests.helpers import wait_until
from tests.helpers.gitrepo import make_repo
from tests.protocol.api import WORKFLOW_MANUAL, WORKFLOW_OK, LeasedRun, Server, op_state


def _task(task_id: str, status: str) -> dict[str, Any]:
    return {"op": "add", "path": f"/tasks/{task_id}",
            "value": {"id": task_id, "node_id": task_id, "status": status, "outputs": {}}}


def _late(run: LeasedRun, seq: int, ops: list[dict[str, Any]]) -> dict[str, Any]:
    resp = run.runner.diffs(run.id, run.lease, [{"writer": run.writer, "seq": seq, "ops": ops}])
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


LATE_OPS = {  # what a late diff tries, and whether a final run lets it apply
    "run status": ([{"op": "replace", "path": "/status", "value": "Completed"}], False),
    "cancel flag": ([{"op": "replace", "path": "/cancel_requested", "value": False}], False),
    "ended_at": ([{"op": "replace", "path": "/ended_at", "value": None}], False),
    "finished task status": ([{"op": "replace", "path": "/tasks/done1/status",
                               "value": "Pending"}], False),
    "finished task removed": ([{"op": "remove", "path": "/tasks/done1"}], False),
    "finished task moved": ([{"op": "move", "from": "/tasks/done1", "path": "/x"}], False),
    "all tasks replaced": ([{"op": "replace", "path": "/tasks", "value": {}}], False),
    "state and status together": ([op_state("late", 1),
                                   {"op": "replace", "path": "/status", "value": "Failed"}],
                                  False),
    "state only": ([op_state("late", 2)], True),
    "output of a finished task": ([{"op": "add", "path": "/tasks/done1/outputs/o",
                                    "value": 1}], True),
}


@pytest.mark.parametrize("end", ["canceled while paused", "finished Completed",
                                 "finished Failed"])
def test_a_final_run_keeps_its_outcome_against_late_diffs(server: Server,
                                                          repo: dict[str, str],
                                                          end: str) -> None:
    run = server.leased_run(repo["name"], "manual.yaml")
    _late(run, 1, [_task("done1", "Completed"), _task("wait1", "AwaitingTrigger")])
    if end == "canceled while paused":
        run.runner.api.ok("POST", f"/runs/{run.id}/finish",
                          json={"lease": run.lease, "status": "AwaitingTrigger"})
        out = server.admin.ok("POST", f"/runs/{run.id}/cancel")
        assert out["status"] == "Canceled" and out["queue"] == "done"
    else:
        status = end.split()[1]
        run.runner.api.ok("POST", f"/runs/{run.id}/finish",
                          json={"lease": run.lease, "status": status})
    before = server.admin.ok("GET", f"/runs/{run.id}")
    table = []
    for seq, (what, (ops, applies)) in enumerate(LATE_OPS.items(), start=2):
        ack = _late(run, seq, ops)
        assert ack["applied"] == 1, ack
        doc = server.admin.ok("GET", f"/runs/{run.id}?history=true")
        entry = doc["history"][-1]
        assert entry["seq"] == seq and entry["ops"] == ops  # kept in the history either way
        table.append(f"{end:22} {what:28} {'applied' if applies else 'ignored'}")
        assert entry.get("ignored", False) is (not applies), table[-1]
        for key in ("status", "cancel_requested", "ended_at"):
            assert doc[key] == before[key], (what, key)
        assert doc["tasks"]["done1"]["status"] == "Completed", what
    print("\n" + "\n".join(table))
    # a second finish changes nothing either
    again = run.runner.api.ok("POST", f"/runs/{run.id}/finish",
                              json={"lease": run.lease, "status": "Completed"})
    assert again["status"] == before["status"]


def test_a_reported_run_that_finished_keeps_its_status(server: Server) -> None:
    import uuid

    from runner.document import new_run

    runner = server.register()
    workflow = {"version": "1", "nodes": [{"id": "a", "steps": [{"run": "true"}]}]}
    doc = new_run(workflow, name="x", params={}, created_at="2024-01-01T00:00:00Z",
                  run_id=str(uuid.uuid4()))
    run_id = runner.api.ok("POST", "/runs/report", 201, json={"run": doc})["id"]
    runner.api.ok("POST", f"/runs/{run_id}/finish", json={"status": "Failed"})
    assert runner.api.ok("POST", f"/runs/{run_id}/finish",
                         json={"status": "Completed"})["status"] == "Failed"
    resp = runner.diffs(run_id, None, [{"writer": "w", "seq": 1, "ops": [
        {"op": "replace", "path": "/status", "value": "Completed"}]}])
    assert resp.status_code == 200
    assert server.admin.ok("GET", f"/runs/{run_id}")["status"] == "Failed"


def test_cancel_of_a_claimed_but_unconfirmed_run_lands_at_once(server: Server,
                                                               repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    out = server.admin.ok("POST", f"/runs/{run.id}/cancel")
    assert out["status"] == "Canceled" and out["queue"] == "done", out
    # its holder learns it at its first start (and stops), nobody ever claims it again
    run.runner.api.error("POST", f"/runs/{run.id}/start", 409, "lease_lost",
                         json={"lease": run.lease})
    assert server.register(run.labels).claim() is None
    assert run.runner.claim() is None


def test_cancel_of_a_confirmed_run_waits_for_its_runner(server: Server,
                                                        repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    run.runner.api.ok("POST", f"/runs/{run.id}/start", json={"lease": run.lease})
    out = server.admin.ok("POST", f"/runs/{run.id}/cancel")
    assert out["queue"] == "leased" and out["status"] == "Pending" and out["cancel_requested"]


def _setup(stub: StubProcess) -> Server:
    make_repo(stub.repos_dir, "demo", {"ok.yaml": WORKFLOW_OK, "manual.yaml": WORKFLOW_MANUAL})
    return Server(stub.url, stub.admin_token, stub.registration_token, stub.repos_dir)


def _info(server: Server, run_id: str) -> dict[str, Any]:
    return dict(next(r for r in server.admin.ok("GET", "/runs?limit=1000")["runs"]
                     if r["id"] == run_id))


def test_cancel_of_a_run_whose_lease_expired_lands_at_once(stub: StubProcess) -> None:
    server = _setup(stub)
    run = server.leased_run("demo")
    run.runner.api.ok("POST", f"/runs/{run.id}/start", json={"lease": run.lease})
    wait_until(lambda: _info(server, run.id)["queue"] == "queued", 10, message="expiry")
    out = server.admin.ok("POST", f"/runs/{run.id}/cancel")
    assert out["status"] == "Canceled" and out["queue"] == "done"
    late = run.runner.diffs(run.id, run.lease, [{"writer": run.writer, "seq": 1,
                                                 "ops": [op_state("late", 1)]}])
    assert late.status_code == 200  # offline work is still delivered ...
    assert _info(server, run.id)["queue"] == "done"  # ... but does not revive the run
    assert server.register(run.labels).claim() is None


def test_a_run_whose_lease_is_lost_three_times_ends_failed(stub: StubProcess) -> None:
    server = _setup(stub)
    run = server.leased_run("demo")
    attempts = []
    for attempt in (1, 2, 3):
        holder = run.runner if attempt == 1 else server.register(run.labels)
        if attempt > 1:
            got = holder.claim(wait=10)
            assert got is not None and got["run"]["attempt"] == attempt, got
            lease = got["lease"]["token"]
        else:
            lease = run.lease
        holder.api.ok("POST", f"/runs/{run.id}/start", json={"lease": lease})
        attempts.append(attempt)
        want = "queued" if attempt < 3 else "done"
        wait_until(lambda w=want: _info(server, run.id)["queue"] == w, 10,  # type: ignore[misc]
                   message=f"lease {attempt} to expire")
    doc = server.admin.ok("GET", f"/runs/{run.id}")
    assert doc["status"] == "Failed" and doc["ended_at"], doc
    assert doc["error"].startswith("runner lost 3 times"), doc["error"]
    assert server.register(run.labels).claim() is None


def test_the_lost_lease_cap_is_configurable(tmp_path: Any, is_stub: bool) -> None:
    if not is_stub:
        pytest.skip("a server flag")
    with StubProcess.start(tmp_path / "data", tmp_path / "repos", "--lease-ttl", "0.5",
                           "--offline-grace", "0.2", "--max-lost-leases", "1") as stub:
        server = _setup(stub)
        run = server.leased_run("demo")
        wait_until(lambda: _info(server, run.id)["queue"] == "done", 10, message="expiry")
        assert server.admin.ok("GET", f"/runs/{run.id}")["error"].startswith(
            "runner lost 1 times")
