"""The dashboard over real HTTP: sessions (cookie flags, hashed at rest, expiry, sign-out),
nothing without a session, CSRF on every form, secret params never shown, the new-run form,
audited actions, live updates over Server-Sent Events."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest
import requests

from server_stub.testing import StubProcess
from tests.helpers import wait_until
from tests.helpers.dashboard import csrf_of, sign_in
from tests.integration.dashboard.conftest import sql

NOBODY = "00000000-0000-4000-8000-000000000000"


def _create(stub: StubProcess, path: str = "gate.yaml", **extra: object) -> dict:
    body = {"repo": "dash", "ref": "main", "workflow_path": path,
            "labels": [f"nobody-{uuid.uuid4().hex[:8]}"], **extra}
    resp = requests.post(stub.url + "/api/v1/runs", json=body, headers=stub.admin_headers,
                         timeout=30)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _register(stub: StubProcess) -> dict:
    resp = requests.post(stub.url + "/api/v1/runners/register", json={"name": "dash-runner"},
                         headers={"Authorization": f"Bearer {stub.registration_token}"},
                         timeout=30)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_cookie_is_httponly_strict_hashed_at_rest_and_secure_behind_tls(stub: StubProcess
                                                                        ) -> None:
    lines = []
    for proto in ("http", "https"):
        session = requests.Session()
        nonce = session.get(stub.url + "/sign-in", timeout=30).text.split(
            'name="nonce" value="')[1].split('"')[0]
        # X-Forwarded-Proto from 127.0.0.1: a proxy the server trusts by default
        resp = session.post(stub.url + "/sign-in", allow_redirects=False, timeout=30,
                            data={"nonce": nonce, "token": stub.admin_token},
                            headers={"X-Forwarded-Proto": proto})
        assert resp.status_code == 303, resp.text
        cookie = next(c for c in resp.headers["set-cookie"].split(", ferry")
                      if c.startswith("ferry_session=") or c.startswith("_session="))
        lines.append(f"{proto:5} {cookie}")
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert "httponly" in flags and "samesite=strict" in flags, cookie
        assert ("secure" in flags) == (proto == "https"), cookie
        raw = session.cookies["ferry_session"]
        stored = [r["id_hash"] for r in sql(stub, "SELECT id_hash FROM web_sessions")]
        assert raw not in stored and raw not in json.dumps(stored)
        assert len(stored) >= 1 and all(len(h) == 64 for h in stored)
    print("\n".join(lines))


def test_pages_redirect_and_streams_refuse_without_a_session(stub: StubProcess) -> None:
    run = _create(stub)
    runner = _register(stub)
    task = "t1"
    pages = ["/", "/runs", f"/runs/{run['id']}", f"/runs/{run['id']}/tasks/{task}/log.txt",
             "/runners", f"/runners/{runner['runner_id']}", "/new"]
    streams = ["/runs/events", f"/runs/{run['id']}/events",
               f"/runs/{run['id']}/tasks/{task}/log/events", "/runners/events"]
    table = []
    for path in pages:
        resp = requests.get(stub.url + path, allow_redirects=False, timeout=30)
        table.append(f"GET {path:70} {resp.status_code} {resp.headers.get('location')}")
        assert resp.status_code == 303, table[-1]
        if path != "/":
            assert resp.headers["location"].startswith("/sign-in?next="), table[-1]
            assert run["name"] not in resp.text
    for path in streams:
        resp = requests.get(stub.url + path, allow_redirects=False, timeout=30)
        table.append(f"GET {path:70} {resp.status_code}")
        assert resp.status_code == 401, table[-1]
    bogus = requests.Session()
    bogus.cookies.set("ferry_session", "not-a-session")
    assert bogus.get(stub.url + "/runs", allow_redirects=False, timeout=30).status_code == 303
    print("\n".join(table))


def test_every_form_post_without_the_csrf_token_is_refused(stub: StubProcess) -> None:
    run = _create(stub)
    runner = _register(stub)
    session = sign_in(stub.url, stub.admin_token)
    posts = [f"/runs/{run['id']}/cancel", f"/runs/{run['id']}/trigger-all",
             f"/runs/{run['id']}/tasks/t1/trigger", f"/runs/{run['id']}/retry-failed",
             f"/runners/{runner['runner_id']}/revoke", f"/runners/{runner['runner_id']}/drain",
             f"/runners/{runner['runner_id']}/undrain", "/new", "/sign-out"]
    table = []
    for path in posts:
        for name, data in (("no token", {}), ("wrong token", {"csrf": "0" * 64})):
            resp = session.post(stub.url + path, data={**data, "repo": "dash", "ref": "main",
                                                       "workflow_path": "gate.yaml"},
                                allow_redirects=False, timeout=30)
            table.append(f"POST {path:70} {name:12} {resp.status_code}")
            assert resp.status_code == 403, table[-1] + resp.text[:300]
    print("\n".join(table))
    # nothing happened: the run is still queued, the runner may still claim, the session lives
    doc = requests.get(f"{stub.url}/api/v1/runs/{run['id']}", headers=stub.admin_headers,
                       timeout=30).json()
    assert doc["status"] == "Pending" and not doc["cancel_requested"]
    listed = requests.get(stub.url + "/api/v1/runners", headers=stub.admin_headers,
                          timeout=30).json()["runners"]
    mine = next(r for r in listed if r["id"] == runner["runner_id"])
    assert not mine["revoked_at"] and not mine["draining"]
    assert session.get(stub.url + "/runs", allow_redirects=False, timeout=30).status_code == 200


def test_sign_in_refuses_other_tokens_and_forged_forms(stub: StubProcess) -> None:
    runner = _register(stub)
    for token in ("wrong-token", stub.registration_token, runner["token"]):
        session = requests.Session()
        nonce = session.get(stub.url + "/sign-in", timeout=30).text.split(
            'name="nonce" value="')[1].split('"')[0]
        resp = session.post(stub.url + "/sign-in", data={"nonce": nonce, "token": token},
                            allow_redirects=False, timeout=30)
        assert resp.status_code == 401 and "ferry_session" not in resp.headers.get(
            "set-cookie", ""), resp.text
        assert token not in resp.text
    # a form posted from elsewhere has no pre-session cookie: refused even with the token
    forged = requests.post(stub.url + "/sign-in", data={"nonce": "x", "token": stub.admin_token},
                           allow_redirects=False, timeout=30)
    assert forged.status_code == 403 and "ferry_session" not in forged.headers.get(
        "set-cookie", "")


def test_sign_out_and_expiry_end_the_session(stub: StubProcess) -> None:
    session = sign_in(stub.url, stub.admin_token)
    page = session.get(stub.url + "/runs", timeout=30)
    resp = session.post(stub.url + "/sign-out", data={"csrf": csrf_of(page.text)},
                        allow_redirects=False, timeout=30)
    assert resp.status_code == 303
    stale = session.cookies.get("ferry_session")
    assert stale is None or stale == ""
    again = requests.Session()
    session2 = sign_in(stub.url, stub.admin_token)
    cookie = session2.cookies["ferry_session"]
    assert session2.get(stub.url + "/runs", allow_redirects=False, timeout=30).status_code == 200
    sql(stub, "UPDATE web_sessions SET expires_at = 0")
    again.cookies.set("ferry_session", cookie)
    assert again.get(stub.url + "/runs", allow_redirects=False, timeout=30).status_code == 303


def test_secret_params_never_reach_a_page(stub: StubProcess) -> None:
    value = "s3cret-" + uuid.uuid4().hex
    run = _create(stub, "secret.yaml", params={"api_key": value, "region": "us"})
    session = sign_in(stub.url, stub.admin_token)
    for path in ("/runs", f"/runs/{run['id']}", "/runs?repo=dash&status=Pending"):
        html = session.get(stub.url + path, timeout=30).text
        assert value not in html, path
        assert "region</span>=<span class=\"pvalue\">us" in html, path
        assert 'title="secret: never shown"' in html, path


def test_new_run_form_from_declared_params_is_audited(stub: StubProcess) -> None:
    session = sign_in(stub.url, stub.admin_token)
    form = session.get(stub.url + "/new", params={"repo": "dash", "ref": "main",
                                                  "workflow_path": "secret.yaml"}, timeout=30)
    assert form.status_code == 200
    html = form.text
    assert 'name="param.region"' in html and '<option value="us"' in html
    assert 'type="password" name="param.api_key"' in html
    assert 'type="checkbox" name="param.dry_run" value="true" checked' in html
    assert "where to deploy" in html
    value = "k3y-" + uuid.uuid4().hex
    resp = session.post(stub.url + "/new", allow_redirects=False, timeout=30, data={
        "csrf": csrf_of(html), "repo": "dash", "ref": "main", "workflow_path": "secret.yaml",
        "param.region": "us", "param.api_key": value, "labels": "nobody-here"})
    assert resp.status_code == 303, resp.text
    run_id = resp.headers["location"].rsplit("/", 1)[1]
    doc = requests.get(f"{stub.url}/api/v1/runs/{run_id}", headers=stub.admin_headers,
                       timeout=30).json()
    assert doc["params"]["region"] == "us" and doc["params"]["api_key"] == "***"
    assert doc["params"]["dry_run"] in ("false", False)  # an unchecked box is false
    audit = requests.get(f"{stub.url}/api/v1/runs/{run_id}/audit", headers=stub.admin_headers,
                         timeout=30).json()["entries"]
    assert [e["action"] for e in audit] == ["create"]
    assert audit[0]["who"] == "admin (dashboard, 127.0.0.1)"
    # an invalid workflow or an unknown ref: the form says why, nothing is queued
    for params, needle in (({"workflow_path": "bad.yaml"}, "not a valid workflow"),
                           ({"ref": "no-such-ref", "workflow_path": "gate.yaml"}, "unknown ref")):
        page = session.get(stub.url + "/new", params={"repo": "dash", "ref": "main", **params},
                           timeout=30)
        assert page.status_code == 400 and needle in page.text, page.text[-800:]


def test_cancel_from_the_dashboard_is_audited_and_streamed_live(stub: StubProcess) -> None:
    run = _create(stub)
    session = sign_in(stub.url, stub.admin_token)
    page = session.get(f"{stub.url}/runs/{run['id']}", timeout=30)
    events: list[str] = []
    opened = threading.Event()

    def listen() -> None:
        with session.get(f"{stub.url}/runs/{run['id']}/events", stream=True,
                         timeout=60) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines(decode_unicode=True):
                opened.set()
                events.append(line)
                if "Canceled" in line:
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(30)
    resp = session.post(f"{stub.url}/runs/{run['id']}/cancel",
                        data={"csrf": csrf_of(page.text)}, allow_redirects=False, timeout=30)
    assert resp.status_code == 303
    wait_until(lambda: any("Canceled" in e for e in events), timeout=30,
               message="the run page's stream to send the Canceled status")
    frag = json.loads(next(e for e in events if "Canceled" in e).removeprefix("data: "))
    assert frag["id"] in ("run-head", "run-actions", "run-history", "run-audit", "run-tree",
                          "run-graph")
    audit = requests.get(f"{stub.url}/api/v1/runs/{run['id']}/audit",
                         headers=stub.admin_headers, timeout=30).json()["entries"]
    assert [(e["action"], e["who"]) for e in audit][-1] == ("cancel",
                                                            "admin (dashboard, 127.0.0.1)")
    # a second cancel is refused with the reason on the page
    again = session.post(f"{stub.url}/runs/{run['id']}/cancel",
                         data={"csrf": csrf_of(page.text)}, allow_redirects=False, timeout=30)
    assert again.status_code == 409 and "already ended" in again.text


@pytest.mark.parametrize("path", ["/runs/" + NOBODY, "/runners/" + NOBODY])
def test_unknown_ids_are_an_html_404(stub: StubProcess, path: str) -> None:
    session = sign_in(stub.url, stub.admin_token)
    resp = session.get(stub.url + path, timeout=30)
    assert resp.status_code == 404 and resp.headers["content-type"].startswith("text/html")
    assert "Content-Security-Policy" in resp.headers
    api = requests.get(stub.url + "/api/v1/runs/" + NOBODY, headers=stub.admin_headers,
                       timeout=30)
    assert api.status_code == 404 and api.json()["error"] == "not_found"


def test_filters_and_paging(stub: StubProcess, tmp_path_factory: pytest.TempPathFactory
                            ) -> None:
    from tests.helpers.gitrepo import commit, init_bare

    repo = f"paging{uuid.uuid4().hex[:6]}"
    commit(init_bare(stub.repos_dir, repo), {"gate.yaml": "version: '1'\nnodes:\n  - id: a\n"
                                                          "    steps: [{run: 'true'}]\n"})
    ids = []
    for _ in range(55):
        resp = requests.post(stub.url + "/api/v1/runs", headers=stub.admin_headers, timeout=30,
                             json={"repo": repo, "ref": "main", "workflow_path": "gate.yaml",
                                   "labels": ["nobody"]})
        ids.append(resp.json()["id"])
    for run_id in ids[:3]:
        requests.post(f"{stub.url}/api/v1/runs/{run_id}/cancel", headers=stub.admin_headers,
                      timeout=30).raise_for_status()
    session = sign_in(stub.url, stub.admin_token)

    def listed(query: str) -> list[str]:
        html = session.get(f"{stub.url}/runs?{query}", timeout=30).text
        return [part.split('"', 1)[0] for part in html.split('<tr data-run="')[1:]]

    first, second = listed(f"repo={repo}"), listed(f"repo={repo}&page=2")
    assert first == ids[::-1][:50] and second == ids[::-1][50:]
    assert listed(f"repo={repo}&status=Canceled") == ids[:3][::-1]
    assert listed(f"repo={repo}&status=Completed") == []
    assert listed(f"repo={repo}&page=99") == second  # past the end: the last page
    page = session.get(f"{stub.url}/runs?repo={repo}", timeout=30).text
    assert "Page 1 of 2" in page and "page=2" in page and "55 runs matching" in page


def test_an_untrusted_proxy_header_does_not_make_the_cookie_secure(tmp_path: Path) -> None:
    # 127.0.0.1 is not among the trusted proxies here: its X-Forwarded-Proto is not believed
    with StubProcess.start(tmp_path / "data", tmp_path / "repos", "--forwarded-allow-ips",
                           "192.0.2.1") as other:
        session = requests.Session()
        nonce = session.get(other.url + "/sign-in", timeout=30).text.split(
            'name="nonce" value="')[1].split('"')[0]
        resp = session.post(other.url + "/sign-in", allow_redirects=False, timeout=30,
                            data={"nonce": nonce, "token": other.admin_token},
                            headers={"X-Forwarded-Proto": "https"})
        assert resp.status_code == 303
        cookie = resp.headers["set-cookie"]
        assert "ferry_session=" in cookie and "secure" not in cookie.lower(), cookie


def test_a_late_diff_the_server_kept_without_applying_is_marked(stub: StubProcess) -> None:
    run = _create(stub)
    label = run["labels"][0]
    runner = requests.post(stub.url + "/api/v1/runners/register", timeout=30,
                           json={"name": "late", "labels": [label]},
                           headers={"Authorization": f"Bearer {stub.registration_token}"}
                           ).json()
    auth = {"Authorization": f"Bearer {runner['token']}"}
    claimed = requests.post(stub.url + "/api/v1/runs/claim", headers=auth, timeout=30,
                            json={"labels": [label], "wait": 0}).json()
    lease = claimed["lease"]["token"]
    writer = f"{runner['runner_id']}/a1"
    requests.post(f"{stub.url}/api/v1/runs/{run['id']}/finish", headers=auth, timeout=30,
                  json={"lease": lease, "status": "Completed"}).raise_for_status()
    late = requests.post(f"{stub.url}/api/v1/runs/{run['id']}/diffs", headers=auth, timeout=30,
                         json={"lease": lease, "diffs": [{"writer": writer, "seq": 1, "ops": [
                             {"op": "replace", "path": "/status", "value": "Failed"}]}]})
    assert late.status_code == 200, late.text
    session = sign_in(stub.url, stub.admin_token)
    html = session.get(f"{stub.url}/runs/{run['id']}", timeout=30).text
    history = html.split('id="run-history"')[1]
    assert '<tr class="ignored">' in history and "ignored (late)" in history
    assert "run status = Failed" in history
    assert 'id="run-status"><span class="badge st-Completed">' in html


def test_rerun_failed_tasks_from_the_dashboard(stub: StubProcess) -> None:
    run = _create(stub)
    label = run["labels"][0]
    runner = requests.post(stub.url + "/api/v1/runners/register", timeout=30,
                           json={"name": "fails", "labels": [label]},
                           headers={"Authorization": f"Bearer {stub.registration_token}"}
                           ).json()
    auth = {"Authorization": f"Bearer {runner['token']}"}
    lease = requests.post(stub.url + "/api/v1/runs/claim", headers=auth, timeout=30,
                          json={"labels": [label], "wait": 0}).json()["lease"]["token"]
    task = {"id": "t-build", "node_id": "build", "status": "Failed", "master": False,
            "parent": None, "matrix": None, "matrix_key": None, "triggered": False,
            "attempt": 1, "interrupted": 0, "started_at": None, "ended_at": None,
            "step": 0, "error": "exit 1", "outputs": {}}
    requests.post(f"{stub.url}/api/v1/runs/{run['id']}/diffs", headers=auth, timeout=30,
                  json={"lease": lease, "diffs": [{"writer": f"{runner['runner_id']}/a1",
                                                   "seq": 1, "ops": [
                      {"op": "add", "path": "/tasks/t-build", "value": task}]}]}
                  ).raise_for_status()
    requests.post(f"{stub.url}/api/v1/runs/{run['id']}/finish", headers=auth, timeout=30,
                  json={"lease": lease, "status": "Failed"}).raise_for_status()
    session = sign_in(stub.url, stub.admin_token)
    page = session.get(f"{stub.url}/runs/{run['id']}", timeout=30).text
    assert f'action="/runs/{run["id"]}/retry-failed"' in page and "exit 1" in page
    resp = session.post(f"{stub.url}/runs/{run['id']}/retry-failed",
                        data={"csrf": csrf_of(page)}, allow_redirects=False, timeout=30)
    assert resp.status_code == 303, resp.text
    doc = requests.get(f"{stub.url}/api/v1/runs/{run['id']}", headers=stub.admin_headers,
                       timeout=30).json()
    assert doc["status"] == "Pending" and doc["tasks"]["t-build"]["status"] == "Pending"
    audit = requests.get(f"{stub.url}/api/v1/runs/{run['id']}/audit",
                         headers=stub.admin_headers, timeout=30).json()["entries"]
    assert (audit[-1]["action"], audit[-1]["who"]) == ("retry-failed",
                                                       "admin (dashboard, 127.0.0.1)")
    after = session.get(f"{stub.url}/runs/{run['id']}", timeout=30).text
    assert "retry-failed" not in after.split('id="run-actions"')[1].split("</section>")[0]


def test_a_distributed_run_shows_its_tasks_runners(stub: StubProcess) -> None:
    session = sign_in(stub.url, stub.admin_token)
    label = f"dist-{uuid.uuid4().hex[:8]}"
    form = session.get(stub.url + "/new", params={"repo": "dash", "ref": "main",
                                                  "workflow_path": "gate.yaml"}, timeout=30)
    resp = session.post(stub.url + "/new", allow_redirects=False, timeout=30, data={
        "csrf": csrf_of(form.text), "repo": "dash", "ref": "main",
        "workflow_path": "gate.yaml", "labels": label, "distributed": "true"})
    assert resp.status_code == 303, resp.text
    run_id = resp.headers["location"].rsplit("/", 1)[1]
    runner = requests.post(stub.url + "/api/v1/runners/register", timeout=30,
                           json={"name": "task-taker", "labels": [label]},
                           headers={"Authorization": f"Bearer {stub.registration_token}"}
                           ).json()
    auth = {"Authorization": f"Bearer {runner['token']}"}
    claimed = requests.post(stub.url + "/api/v1/runs/claim", headers=auth, timeout=30,
                            json={"labels": [label], "wait": 0, "tasks": True})
    assert claimed.status_code == 200, claimed.text
    task = claimed.json()["task"]
    assert claimed.json()["run"]["id"] == run_id and task
    listing = session.get(f"{stub.url}/runs?repo=dash", timeout=30).text
    row = listing.split(f'<tr data-run="{run_id}">')[1].split("</tr>")[0]
    assert "distributed" in row
    page = session.get(f"{stub.url}/runs/{run_id}", timeout=30).text
    assert "distributed: its tasks are leased one by one" in page
    assert f'id="task-{task}"' in page and "on task-taker" in page
    runners = requests.get(stub.url + "/api/v1/runners", headers=stub.admin_headers,
                           timeout=30).json()["runners"]
    mine = next(r for r in runners if r["id"] == runner["runner_id"])
    assert mine["current_runs"] == [run_id]
    requests.post(f"{stub.url}/api/v1/runners/{runner['runner_id']}/revoke",
                  headers=stub.admin_headers, timeout=30).raise_for_status()

    def held() -> list[str]:
        found = requests.get(stub.url + "/api/v1/runners", headers=stub.admin_headers,
                             timeout=30).json()["runners"]
        return list(next(r for r in found if r["id"] == runner["runner_id"])["current_runs"])

    # its task's lease ended with its token: the reaper takes the task back within a second
    wait_until(lambda: held() == [], timeout=30, message="the revoked runner's task given back")
