"""Runs: create (ref resolution, validation), list, get, cancel."""

from __future__ import annotations

from typing import Any

from tests.protocol.api import Server, label


def _create(server: Server, repo: dict[str, str], **kw: Any) -> dict[str, Any]:
    body = {"repo": repo["name"], "ref": "main", "workflow_path": "ok.yaml",
            "labels": [label()], **kw}
    return dict(server.admin.ok("POST", "/runs", 201, json=body))


def test_ref_is_resolved_to_the_commit(server: Server, repo: dict[str, str]) -> None:
    assert _create(server, repo)["commit"] == repo["sha"]
    assert _create(server, repo, ref=repo["tag"])["commit"] == repo["sha"]
    assert _create(server, repo, ref=repo["sha"][:10])["commit"] == repo["sha"]
    assert _create(server, repo, ref=repo["old"])["commit"] == repo["old"]


def test_create_refuses_what_does_not_exist(server: Server, repo: dict[str, str]) -> None:
    base = {"repo": repo["name"], "ref": "main", "workflow_path": "ok.yaml"}
    admin = server.admin
    admin.error("POST", "/runs", 404, "not_found", json={**base, "ref": "no-such-branch"})
    admin.error("POST", "/runs", 404, "not_found", json={**base, "repo": "no-such-repo"})
    admin.error("POST", "/runs", 404, "not_found", json={**base, "workflow_path": "nope.yaml"})
    # The workflow did not exist yet at the older commit.
    admin.error("POST", "/runs", 404, json={**base, "ref": repo["old"],
                                            "workflow_path": "manual.yaml"})
    admin.error("POST", "/runs", 422, json={**base, "ref": "--upload-pack=x"})
    admin.error("POST", "/runs", 422, json={**base, "workflow_path": "../ok.yaml"})
    admin.error("POST", "/runs", 404, json={**base, "ref": "main..main"})


def test_invalid_workflow_is_422_with_every_problem(server: Server,
                                                    repo: dict[str, str]) -> None:
    before = len(server.admin.ok("GET", f"/runs?repo={repo['name']}&limit=1000")["runs"])
    body = server.admin.error("POST", "/runs", 422, "invalid_workflow", json={
        "repo": repo["name"], "ref": "main", "workflow_path": "bad.yaml"})
    assert body["problems"] and all("message" in p for p in body["problems"])
    assert "bad.yaml" in body["message"]
    after = len(server.admin.ok("GET", f"/runs?repo={repo['name']}&limit=1000")["runs"])
    assert after == before  # nothing queued


def test_get_returns_the_initial_document(server: Server, repo: dict[str, str]) -> None:
    info = _create(server, repo, params={"region": "eu"})
    doc = server.admin.ok("GET", f"/runs/{info['id']}")
    assert doc["id"] == info["id"] and doc["status"] == "Pending"
    assert doc["params"] == {"region": "eu"} and doc["tasks"] == {}
    assert doc["workflow"]["nodes"][0]["id"] == "build"
    assert doc["workflow_digest"].startswith("sha256:") and doc["workflow_path"] == "ok.yaml"
    assert doc["cancel_requested"] is False
    server.admin.error("GET", "/runs/00000000-0000-4000-8000-0000000000ff", 404, "not_found")
    server.admin.error("GET", "/runs/does-not-exist", 404, "not_found")


def test_list_filters_and_orders(server: Server, repo: dict[str, str]) -> None:
    first, second = _create(server, repo), _create(server, repo)
    runs = server.admin.ok("GET", f"/runs?repo={repo['name']}&limit=1000")["runs"]
    ids = [r["id"] for r in runs]
    assert ids.index(second["id"]) < ids.index(first["id"])  # most recent first
    assert all(r["repo"] == repo["name"] for r in runs)
    assert len(server.admin.ok("GET", f"/runs?repo={repo['name']}&limit=1")["runs"]) == 1
    server.admin.ok("POST", f"/runs/{first['id']}/cancel")
    canceled = server.admin.ok("GET", f"/runs?repo={repo['name']}&status=Canceled")["runs"]
    assert first["id"] in [r["id"] for r in canceled]
    assert second["id"] not in [r["id"] for r in canceled]
    queued = server.admin.ok("GET", f"/runs?repo={repo['name']}&queue=queued&limit=1000")
    assert second["id"] in [r["id"] for r in queued["runs"]]
    server.admin.error("GET", "/runs?limit=0", 422)
    server.admin.error("GET", "/runs?queue=bogus", 422)


def test_cancel_of_a_queued_run_ends_it(server: Server, repo: dict[str, str]) -> None:
    info = _create(server, repo)
    out = server.admin.ok("POST", f"/runs/{info['id']}/cancel")
    assert out["queue"] == "done" and out["status"] == "Canceled" and out["cancel_requested"]
    doc = server.admin.ok("GET", f"/runs/{info['id']}?history=true")
    assert doc["status"] == "Canceled" and doc["cancel_requested"] is True and doc["ended_at"]
    assert [d["writer"] for d in doc["history"]] == ["server"]
    runner = server.register(info["labels"])
    assert runner.claim() is None  # a canceled run is never handed out
    server.admin.error("POST", f"/runs/{info['id']}/cancel", 409, "already_finished")


def test_cancel_of_a_running_run_reaches_its_heartbeat(server: Server,
                                                       repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    runner, lease, path = run.runner, {"lease": run.lease}, f"/runs/{run.id}"
    assert runner.api.ok("POST", f"{path}/heartbeat", json=lease)["cancel_requested"] is False
    out = server.admin.ok("POST", f"{path}/cancel")
    assert out["queue"] == "leased" and out["cancel_requested"] is True
    assert runner.api.ok("POST", f"{path}/heartbeat", json=lease)["cancel_requested"] is True
    fin = runner.api.ok("POST", f"{path}/finish", json={**lease, "status": "Canceled"})
    assert fin["status"] == "Canceled" and fin["queue"] == "done"
