"""Ids are validated once, on every route: run ids are UUIDs, task ids match the documented
pattern; a path with a bad id matches no route (404, or 405 where another method serves that
path), a body with one is a 422 naming it; nothing derived from a request reaches a file path
unchecked; huge offsets and NUL bytes are 4xx, never a 500."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from runner.api.protocol import RUN_ID_PATTERN, TASK_ID_PATTERN
from runner.document import new_run
from server_stub.cli import openapi_text
from server_stub.testing import StubProcess
from tests.protocol.api import Server

UNKNOWN = "00000000-0000-4000-8000-0000000000aa"
# as URL path segments (percent-encoded: a client folds a raw '..' segment before sending)
BAD_RUN_IDS = ["%2E%2E", "%2e", "nope", "a%00b", UNKNOWN.upper(), UNKNOWN + "0", "x" * 101,
               "..%2F..%2Fetc", "%00", UNKNOWN[:-1] + "%0A"]
BAD_TASK_IDS = ["..", ".hidden", "a\x00b", "-x", "x" * 101, "a b"]

# every route with a run id: (method, path template, body of the right shape)
RUN_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/runs/{run}", None),
    ("POST", "/runs/{run}/start", {"lease": "x"}),
    ("POST", "/runs/{run}/heartbeat", {"lease": "x"}),
    ("POST", "/runs/{run}/diffs", {"lease": "x", "diffs": [{"writer": "w", "seq": 1,
                                                            "ops": []}]}),
    ("POST", "/runs/{run}/logs", {"lease": "x", "task": "t", "offset": 0, "data": "eA=="}),
    ("POST", "/runs/{run}/finish", {"lease": "x", "status": "Completed"}),
    ("POST", "/runs/{run}/cancel", None),
    ("POST", "/runs/{run}/tasks/t/trigger", None),
    ("POST", "/runs/{run}/trigger-all", None),
    ("POST", "/runs/{run}/retry-failed", None),
    ("GET", "/runs/{run}/logs/t", None),
    ("GET", "/runs/{run}/patch", None),
    ("GET", "/runs/{run}/audit", None),
]


def _role(method: str, path: str) -> str:
    runner_only = any(path.endswith(s) for s in ("/start", "/heartbeat", "/diffs", "/finish"))
    runner_only |= method == "POST" and path.endswith("/logs")
    return "runner" if runner_only else "admin"


def test_every_route_refuses_bad_run_ids_and_404s_unknown_ones(server: Server) -> None:
    runner = server.register()
    apis = {"admin": server.admin, "runner": runner.api}
    table: list[str] = []
    for method, template, body in RUN_ROUTES:
        api = apis[_role(method, template)]
        for bad in BAD_RUN_IDS:
            resp = api.call(method, template.format(run=bad), json=body)
            table.append(f"{method:4} {template:30} {bad[:20]!r:24} {resp.status_code}")
            assert resp.status_code == 404, table[-1] + " " + resp.text
            assert resp.json()["error"] == "not_found", resp.text
        resp = api.call(method, template.format(run=UNKNOWN), json=body)
        table.append(f"{method:4} {template:30} {'unknown uuid':24} {resp.status_code}")
        assert resp.status_code == 404 and resp.json()["error"] == "not_found", resp.text
    print("\n" + "\n".join(table))


def test_bad_task_ids_are_refused_on_every_route(server: Server, repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    for bad in BAD_TASK_IDS:
        seg = quote(bad, safe="").replace(".", "%2E")  # a raw '..' would be folded client-side
        resp = server.admin.call("GET", f"/runs/{run.id}/logs/{seg}")
        assert resp.status_code == 404 and resp.json()["error"] == "not_found", (bad, resp.text)
        resp = server.admin.call("GET", f"/runs/{run.id}/patch", params={"task": bad})
        assert resp.status_code == 422, (bad, resp.text)  # a query field: named, not routed
        resp = server.admin.call("POST", f"/runs/{run.id}/tasks/{seg}/trigger")
        assert resp.status_code == 404 and resp.json()["error"] == "not_found", (bad, resp.text)
        resp = run.runner.log(run.id, run.lease, bad, 0, b"x")
        assert resp.status_code == 422, (bad, resp.text)


def test_report_refuses_run_ids_that_are_not_uuids(server: Server) -> None:
    runner = server.register()
    workflow = {"version": "1", "nodes": [{"id": "a", "steps": [{"run": "true"}]}]}
    for bad in ("..", "../..", "x/y", "a\x00b", "", UNKNOWN.upper()):
        doc = {**new_run(workflow, name="evil", params={}, created_at="2024-01-01T00:00:00Z"),
               "id": bad}
        body = runner.api.error("POST", "/runs/report", 422, "invalid_request",
                                json={"run": doc})
        assert "UUID" in body["message"]
        resp = runner.log(bad, None, "evil", 0, b"owned\n") if bad else None
        assert resp is None or resp.status_code in (404, 405, 422), resp.text


def test_report_refuses_traversal_on_the_stubs_disk(tmp_path: Path, is_stub: bool) -> None:
    if not is_stub:
        pytest.skip("looks at the stub's data dir")
    with StubProcess.start(tmp_path / "data", tmp_path / "repos") as stub:
        reg = {"Authorization": f"Bearer {stub.registration_token}"}
        token = requests.post(stub.url + "/api/v1/runners/register", headers=reg,
                              json={"name": "x"}, timeout=30).json()["token"]
        hdr = {"Authorization": f"Bearer {token}"}
        workflow = {"version": "1", "nodes": [{"id": "a", "steps": [{"run": "true"}]}]}
        doc = new_run(workflow, name="evil", params={}, created_at="2024-01-01T00:00:00Z",
                      run_id="..")
        resp = requests.post(stub.url + "/api/v1/runs/report", headers=hdr, json={"run": doc},
                             timeout=30)
        assert resp.status_code == 422, resp.text
        chunk = {"task": "evil", "offset": 0, "data": base64.b64encode(b"owned\n").decode()}
        resp = requests.post(stub.url + "/api/v1/runs/%2e%2e/logs", headers=hdr, json=chunk,
                             timeout=30)
        assert resp.status_code in (404, 422), resp.text
    assert not (tmp_path / "data" / "evil.log").exists()
    assert [p.name for p in (tmp_path / "data").glob("*.log")] == ["server.log"]


@pytest.mark.parametrize("offset", [2**53, 2**62, 2**70, -1])
def test_huge_and_negative_log_offsets_are_4xx(server: Server, repo: dict[str, str],
                                               offset: int) -> None:
    run = server.leased_run(repo["name"])
    resp = server.admin.call("GET", f"/runs/{run.id}/logs/t?offset={offset}")
    assert resp.status_code == 422 and resp.json()["error"] == "invalid_request", resp.text
    resp = run.runner.log(run.id, run.lease, "t", offset, b"x")
    assert resp.status_code == 422, resp.text
    # the largest accepted offset past the end: empty, not EINVAL
    resp = server.admin.call("GET", f"/runs/{run.id}/logs/t?offset={2**53 - 1}")
    assert resp.status_code == 200 and resp.content == b""


def test_openapi_declares_the_id_patterns() -> None:
    doc = json.loads(openapi_text())
    seen = 0
    for path, item in doc["paths"].items():
        for op in item.values():
            for param in op.get("parameters", []):
                if param["name"] == "run_id":
                    assert param["schema"]["pattern"] == RUN_ID_PATTERN, path
                    seen += 1
                if param["name"] == "task_id":
                    assert param["schema"]["pattern"] == TASK_ID_PATTERN, path
    assert seen == len(RUN_ROUTES)
    chunk = doc["components"]["schemas"]["LogChunk"]["properties"]["task"]
    assert chunk["pattern"] == TASK_ID_PATTERN


def test_new_ids_match_the_pattern() -> None:
    import re

    assert all(re.fullmatch(RUN_ID_PATTERN, str(uuid.uuid4())) for _ in range(100))
