"""Auth: every endpoint needs a token (401 JSON), roles are kept apart (403)."""

from __future__ import annotations

import pytest

from tests.protocol.api import Api, Server

RID = "00000000-0000-4000-8000-000000000000"
ENDPOINTS = [
    ("POST", "/runners/register"), ("POST", "/runs"), ("GET", "/runs"), ("GET", f"/runs/{RID}"),
    ("POST", "/runs/claim"), ("POST", "/runs/report"), ("POST", f"/runs/{RID}/start"),
    ("POST", f"/runs/{RID}/heartbeat"), ("POST", f"/runs/{RID}/diffs"),
    ("POST", f"/runs/{RID}/logs"), ("POST", f"/runs/{RID}/finish"),
    ("POST", f"/runs/{RID}/cancel"), ("POST", f"/runs/{RID}/tasks/t/trigger"),
    ("POST", f"/runs/{RID}/trigger-all"), ("GET", f"/runs/{RID}/logs/t"),
    ("GET", "/repos/r/blob/main/x.yaml"), ("GET", "/repos/r/archive/main"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_every_endpoint_needs_a_valid_token(server: Server, method: str, path: str,
                                            token: str | None) -> None:
    body = Api(server.url, token).error(method, path, 401, "unauthorized", json={})
    assert "token" in body["message"].lower()


def test_malformed_authorization_header_is_401(server: Server) -> None:
    api = Api(server.url, None)
    api.error("GET", "/runs", 401, headers={"Authorization": f"Basic {server.admin_token}"})
    api.error("GET", "/runs", 401, headers={"Authorization": "Bearer "})


def test_roles_are_kept_apart(server: Server, repo: dict[str, str]) -> None:
    runner = server.register()
    create = {"repo": repo["name"], "ref": "main", "workflow_path": "ok.yaml"}
    runner.api.error("POST", "/runs", 403, "forbidden", json=create)
    runner.api.error("POST", "/runners/register", 403, json={"name": "x"})
    server.admin.error("POST", "/runs/claim", 403, json={"wait": 0})
    reg = Api(server.url, server.registration_token)
    reg.error("GET", "/runs", 403)
    reg.error("POST", "/runs", 403, json=create)


def test_runner_only_touches_runs_it_holds(server: Server, repo: dict[str, str]) -> None:
    leased = server.leased_run(repo["name"])
    run, holder, got, lease = leased.created, leased.runner, leased.claimed, leased.lease
    other = server.register(leased.labels)
    assert got["run"]["id"] == run["id"]
    other.api.error("GET", f"/runs/{run['id']}", 403, "forbidden")
    other.api.error("GET", f"/runs/{run['id']}/logs/t", 403, "forbidden")
    # Even with the holder's lease token, another runner may not write.
    other.api.error("POST", f"/runs/{run['id']}/heartbeat", 403, json={"lease": lease})
    assert other.diffs(run["id"], lease, [{"writer": "w", "seq": 1, "ops": []}]
                       ).status_code == 403
    assert other.log(run["id"], lease, "t", 0, b"x").status_code == 403
    other.api.error("POST", f"/runs/{run['id']}/finish", 403,
                    json={"lease": lease, "status": "Completed"})
    # The holder can, and nothing the other runner sent was written.
    doc = holder.api.ok("GET", f"/runs/{run['id']}")
    assert doc["state"] == {} and doc["status"] == "Pending"
    holder.api.ok("POST", f"/runs/{run['id']}/heartbeat", json={"lease": lease})


def test_runner_may_not_claim_with_labels_it_did_not_register(server: Server) -> None:
    runner = server.register(["linux"])
    runner.api.error("POST", "/runs/claim", 403, json={"labels": ["gpu"], "wait": 0})
