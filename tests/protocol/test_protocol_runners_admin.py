"""Runner management over the API (admin token): the list, revoking a token, draining, and the
audit trail of runs and runners."""

from __future__ import annotations

import threading
import time

from tests.protocol.api import Api, Server, label


def _runner_info(server: Server, runner_id: str) -> dict:
    runners = server.admin.ok("GET", "/runners")["runners"]
    found = [r for r in runners if r["id"] == runner_id]
    assert len(found) == 1, runners
    return dict(found[0])


def test_list_shows_labels_version_contact_and_current_runs(server: Server,
                                                            repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    # a runner's request with a ferry User-Agent is its version (the daemon's client sends it)
    run.runner.api.session.headers["User-Agent"] = "ferry/9.8.7 (test)"
    assert run.runner.claim(labels=run.labels) is None
    info = _runner_info(server, run.runner.id)
    print(info)
    assert info["labels"] == run.labels
    assert info["version"] == "9.8.7"
    assert info["online"] is True and info["last_seen"]
    assert info["current_runs"] == [run.id]
    assert info["draining"] is False and info["revoked_at"] is None
    assert "token" not in str(info).lower().replace("revoked", "")


def test_revoked_token_answers_401_naming_the_revocation(server: Server,
                                                         repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    before = run.runner.api.call("POST", f"/runs/{run.id}/heartbeat", json={"lease": run.lease})
    assert before.status_code == 200, before.text
    revoked = server.admin.ok("POST", f"/runners/{run.runner.id}/revoke")
    assert revoked["revoked_at"] and revoked["online"] is False
    body = run.runner.api.error("POST", f"/runs/{run.id}/heartbeat", 401, "unauthorized",
                                json={"lease": run.lease})
    assert "revoked" in body["message"], body
    run.runner.api.error("POST", "/runs/claim", 401, json={"wait": 0})
    # its run is given back: lease ended now, the reaper queues it again
    again = server.admin.ok("GET", f"/runs/{run.id}")
    assert again["id"] == run.id
    server.admin.error("POST", f"/runners/{run.runner.id}/revoke", 409, "already_revoked")
    audit = server.admin.ok("GET", f"/runners/{run.runner.id}/audit")["entries"]
    assert [e["action"] for e in audit] == ["revoke"] and audit[0]["who"] == "admin (API)"


def test_revoke_answers_a_claim_already_waiting(server: Server) -> None:
    runner = server.register([label()])
    answers: list[int] = []
    waiting = threading.Thread(target=lambda: answers.append(runner.api.call(
        "POST", "/runs/claim", json={"labels": runner.labels, "wait": 20}, timeout=40
    ).status_code))
    started = time.monotonic()
    waiting.start()
    time.sleep(0.5)  # let the claim reach its hold (a claim that starts later gets 401 anyway)
    server.admin.ok("POST", f"/runners/{runner.id}/revoke")
    waiting.join(30)
    assert answers == [401]
    assert time.monotonic() - started < 15, "the waiting claim was not woken by the revoke"


def test_drained_runner_claims_nothing_until_undrained(server: Server,
                                                       repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    runner = run.runner
    drained = server.admin.ok("POST", f"/runners/{runner.id}/drain")
    assert drained["draining"] is True and drained["current_runs"] == [run.id]
    queued = server.admin.ok("POST", "/runs", 201, json={
        "repo": repo["name"], "ref": "main", "workflow_path": "ok.yaml", "labels": run.labels})
    body = runner.api.error("POST", "/runs/claim", 409, "runner_draining",
                            json={"labels": run.labels, "wait": 0})
    assert "drain" in body["message"]
    # its running run goes on
    beat = runner.api.call("POST", f"/runs/{run.id}/heartbeat", json={"lease": run.lease})
    assert beat.status_code == 200, beat.text
    undrained = server.admin.ok("DELETE", f"/runners/{runner.id}/drain")
    assert undrained["draining"] is False
    claimed = runner.claim()
    assert claimed is not None and claimed["run"]["id"] == queued["id"]
    actions = [e["action"] for e in server.admin.ok("GET", f"/runners/{runner.id}/audit")[
        "entries"]]
    assert actions == ["drain", "undrain"]


def test_unknown_runner_is_404(server: Server) -> None:
    nobody = "00000000-0000-4000-8000-000000000000"
    for method, path in (("POST", f"/runners/{nobody}/revoke"),
                         ("POST", f"/runners/{nobody}/drain"),
                         ("DELETE", f"/runners/{nobody}/drain"),
                         ("GET", f"/runners/{nobody}/audit")):
        server.admin.error(method, path, 404, "not_found")


def test_run_audit_names_who_did_what_and_when(server: Server, repo: dict[str, str]) -> None:
    created = server.admin.ok("POST", "/runs", 201, json={
        "repo": repo["name"], "ref": "main", "workflow_path": "ok.yaml",
        "labels": [label()]})
    server.admin.ok("POST", f"/runs/{created['id']}/cancel")
    entries = server.admin.ok("GET", f"/runs/{created['id']}/audit")["entries"]
    print(entries)
    assert [e["action"] for e in entries] == ["create", "cancel"]
    assert all(e["who"] == "admin (API)" and e["at"].endswith("Z") for e in entries)
    assert "ok.yaml" in entries[0]["detail"] and repo["name"] in entries[0]["detail"]
    assert "at once" in entries[1]["detail"]
    Api(server.url, server.registration_token).error(
        "GET", f"/runs/{created['id']}/audit", 403, "forbidden")
