"""Distributed runs: the server plans the run and leases its ready tasks one by one (claims with
`tasks: true`); each task has its own lease, heartbeat and writer; dependencies, a `from_state`
matrix, manual triggers, cancel and lost runners behave as for whole-run claims."""

from __future__ import annotations

from typing import Any

from server_stub.testing import StubProcess
from tests.helpers.gitrepo import make_repo
from tests.protocol.api import WORKFLOW_DISTRIBUTED, Runner, Server, label


def _create(server: Server, repo: str, lab: str) -> dict[str, Any]:
    return dict(server.admin.ok("POST", "/runs", 201, json={
        "repo": repo, "ref": "main", "workflow_path": "distributed.yaml", "labels": [lab],
        "distributed": True}))


def _claim(runner: Runner, wait: float = 0) -> dict[str, Any] | None:
    resp = runner.api.call("POST", "/runs/claim", timeout=wait + 20,
                           json={"labels": runner.labels, "wait": wait, "tasks": True})
    if resp.status_code == 204:
        return None
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _node(server: Server, run_id: str, task_id: str) -> str:
    return str(server.admin.ok("GET", f"/runs/{run_id}")["tasks"][task_id]["node_id"])


def _complete(runner: Runner, got: dict[str, Any], ops: list[dict[str, Any]] | None = None,
              status: str = "Completed") -> dict[str, Any]:
    """What a runner's task job does: start, write the task's end (and state), finish."""
    run_id, task, lease = got["run"]["id"], got["task"], got["lease"]["token"]
    runner.api.ok("POST", f"/runs/{run_id}/start", json={"lease": lease})
    writer = f"{runner.id}/{task}/a{got['run']['attempt']}"
    body = [*(ops or []), {"op": "replace", "path": f"/tasks/{task}/status", "value": status}]
    resp = runner.diffs(run_id, lease, [{"writer": writer, "seq": 1, "ops": body}])
    assert resp.status_code == 200, resp.text
    return dict(runner.api.ok("POST", f"/runs/{run_id}/finish",
                              json={"lease": lease, "status": status}))


def test_a_distributed_run_is_handed_out_task_by_task(server: Server,
                                                      repo: dict[str, str]) -> None:
    lab = label()
    created = _create(server, repo["name"], lab)
    assert created["distributed"] is True and created["queue"] == "distributed"
    one, two = server.register([lab]), server.register([lab])
    assert one.claim() is None, "a runner that does not take tasks was handed a distributed run"
    first = _claim(one)
    assert first is not None and first["run"]["id"] == created["id"]
    assert _node(server, created["id"], first["task"]) == "discover"
    assert _claim(two) is None  # the fan-out depends on discover: nothing else is ready
    doc = server.admin.ok("GET", f"/runs/{created['id']}")
    assert doc["tasks"][first["task"]]["status"] == "Running"
    _complete(one, first, [{"op": "add", "path": "/state/items", "value": ["a", "b", "c"]}])
    # the from_state matrix grew from the state discover wrote: three children, one each
    got = [c for c in (_claim(one), _claim(two), _claim(one)) if c is not None]
    assert len({c["task"] for c in got}) == 3, got
    assert {_node(server, created["id"], c["task"]) for c in got} == {"fan"}
    assert _claim(two) is None
    holders = {c["task"]: r for c, r in zip(got, (one, two, one), strict=True)}
    for claim in got:
        _complete(holders[claim["task"]], claim)
    runs = server.admin.ok("GET", "/runs?limit=1000")["runs"]
    info = next(r for r in runs if r["id"] == created["id"])
    assert info["queue"] == "paused" and info["status"] == "AwaitingTrigger"
    doc = server.admin.ok("GET", f"/runs/{created['id']}")
    approve = next(t for t, v in doc["tasks"].items() if v["node_id"] == "approve")
    server.admin.ok("POST", f"/runs/{created['id']}/tasks/{approve}/trigger")
    last = _claim(two)
    assert last is not None and last["task"] == approve
    out = _complete(two, last)
    assert out["queue"] == "done" and out["status"] == "Completed", out
    final = server.admin.ok("GET", f"/runs/{created['id']}")
    assert final["status"] == "Completed" and final["ended_at"]
    assert all(t["status"] == "Completed" for t in final["tasks"].values()), final["tasks"]


def test_a_task_lease_writes_only_its_task_and_the_state(server: Server,
                                                         repo: dict[str, str]) -> None:
    lab = label()
    created = _create(server, repo["name"], lab)
    runner = server.register([lab])
    got = _claim(runner)
    assert got is not None
    lease, task = got["lease"]["token"], got["task"]
    writer = f"{runner.id}/{task}/a1"
    for path in ("/status", "/tasks/00000000-0000-4000-8000-000000000000/status", "/params/x"):
        resp = runner.diffs(created["id"], lease, [{"writer": writer, "seq": 1, "ops": [
            {"op": "add", "path": path, "value": "x"}]}])
        assert resp.status_code == 403 and resp.json()["error"] == "forbidden", (path, resp.text)
    ok = runner.diffs(created["id"], lease, [{"writer": writer, "seq": 1, "ops": [
        {"op": "add", "path": "/state/k", "value": 1},
        {"op": "add", "path": f"/tasks/{task}/outputs", "value": {"o": "1"}}]}])
    assert ok.status_code == 200, ok.text
    # its log too: its own task's, never another task's
    assert runner.log(created["id"], lease, task, 0, b"mine\n").status_code == 200
    assert runner.log(created["id"], lease, f"{task}.patch", 0, b"diff\n").status_code == 200
    for other_task in ("00000000-0000-4000-8000-000000000000", "discover"):
        resp = runner.log(created["id"], lease, other_task, 0, b"not mine\n")
        assert resp.status_code == 403 and resp.json()["error"] == "forbidden", resp.text
    # another runner of the run cannot use this lease; the lease fences nothing else
    other = server.register([lab])
    assert other.diffs(created["id"], lease, [{"writer": "w", "seq": 1, "ops": []}]
                       ).status_code == 403


def test_cancel_stops_running_tasks_and_drops_the_rest(server: Server,
                                                       repo: dict[str, str]) -> None:
    lab = label()
    created = _create(server, repo["name"], lab)
    runner = server.register([lab])
    got = _claim(runner)
    assert got is not None
    lease = {"lease": got["lease"]["token"]}
    runner.api.ok("POST", f"/runs/{created['id']}/start", json=lease)
    out = server.admin.ok("POST", f"/runs/{created['id']}/cancel")
    assert out["queue"] == "distributed"  # its running task has to stop first
    assert runner.api.ok("POST", f"/runs/{created['id']}/heartbeat", json=lease)[
        "cancel_requested"] is True
    done = _complete(runner, got, status="Failed")
    assert done["queue"] == "done" and done["status"] == "Canceled", done
    assert _claim(runner) is None


def test_a_lost_runner_s_task_is_requeued_and_completed_work_kept(stub: StubProcess) -> None:
    make_repo(stub.repos_dir, "demo", {"distributed.yaml": WORKFLOW_DISTRIBUTED})
    server = Server(stub.url, stub.admin_token, stub.registration_token, stub.repos_dir)
    lab = label()
    created = _create(server, "demo", lab)
    first, second = server.register([lab]), server.register([lab])
    got = _claim(first)
    assert got is not None
    _complete(first, got, [{"op": "add", "path": "/state/items", "value": ["a", "b"]}])
    lost = _claim(first)  # then the runner goes silent
    assert lost is not None
    # the reaper re-queues it after the 1.5 s deadline; the other runner gets the same task
    again = _claim(second, wait=10)
    if again is not None and again["task"] != lost["task"]:
        _complete(second, again)
        again = _claim(second, wait=10)
    assert again is not None and again["task"] == lost["task"], (lost, again)
    assert again["run"]["attempt"] == 2
    doc = server.admin.ok("GET", f"/runs/{created['id']}")
    assert doc["tasks"][lost["task"]]["interrupted"] == 1
    assert doc["tasks"][got["task"]]["status"] == "Completed"  # never handed out again
    stale = first.diffs(created["id"], lost["lease"]["token"], [{
        "writer": f"{first.id}/{lost['task']}/a1", "seq": 1,
        "ops": [{"op": "add", "path": "/state/late", "value": 1}]}])
    assert stale.status_code == 409 and stale.json()["error"] == "lease_lost"
    assert _complete(second, again)["queue"] in ("distributed", "paused")


def test_revoking_a_runner_gives_its_task_to_another_at_once(server: Server,
                                                             repo: dict[str, str]) -> None:
    lab = label()
    created = _create(server, repo["name"], lab)
    holder, other = server.register([lab]), server.register([lab])
    got = _claim(holder)
    assert got is not None
    holder.api.ok("POST", f"/runs/{created['id']}/start", json={"lease": got["lease"]["token"]})
    server.admin.ok("POST", f"/runners/{holder.id}/revoke")
    # the lease deadline is minutes away: only the revocation hands the task on now
    again = _claim(other, wait=15)
    assert again is not None and again["task"] == got["task"], again
    assert again["run"]["attempt"] == 2
