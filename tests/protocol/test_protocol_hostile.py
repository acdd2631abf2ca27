"""Hostile input: 4xx with a JSON error body, never a 500, never a partial write."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.protocol.api import Server, op_state


@pytest.mark.parametrize(("body", "status"), [
    (b"{not json", 400), (b"", 422), (b"[]", 422), (b"null", 422), (b"\xff\xfe", 400),
    (json.dumps({"repo": 1, "ref": [], "workflow_path": None}).encode(), 422),
    (json.dumps({"repo": "r", "ref": "main", "workflow_path": "x", "bogus": 1}).encode(), 422),
    (json.dumps({"repo": "r", "ref": "main", "workflow_path": "x",
                 "params": {"a": {"nested": 1}}}).encode(), 422),
    (json.dumps({"repo": "", "ref": "main", "workflow_path": "x"}).encode(), 422),
])
def test_bad_bodies_are_4xx_json(server: Server, body: bytes, status: int) -> None:
    resp = server.admin.call("POST", "/runs", data=body,
                             headers={"Content-Type": "application/json"})
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] in ("malformed_json", "invalid_request")


def test_unknown_route_and_method_are_json(server: Server) -> None:
    server.admin.error("GET", "/nowhere", 404)
    server.admin.error("DELETE", "/runs", 405)


def test_oversize_body_by_content_length(server: Server) -> None:
    big = b'{"name": "' + b"x" * (17 * 1024 * 1024) + b'"}'
    resp = server.admin.call("POST", "/runners/register", data=big,
                             headers={"Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"] == "too_large"


def test_oversize_body_when_chunked(server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(17):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    resp = server.admin.call("POST", "/runners/register", data=chunks(),  # type: ignore[arg-type]
                             headers={"Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"] == "too_large"


def test_out_of_range_numbers_and_ids(server: Server, repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    info, runner, lease = run.created, run.runner, run.lease
    for seq in (0, -1, 2**70, "one", 1.5, None):
        resp = runner.diffs(info["id"], lease, [{"writer": "w", "seq": seq,
                                                 "ops": [op_state("x", 1)]}])
        assert 400 <= resp.status_code < 500, (seq, resp.text)
    resp = runner.log(info["id"], lease, "t", 2**70, b"x")
    assert 400 <= resp.status_code < 500
    runner.api.error("POST", "/runs/claim", 422, json={"wait": 31})
    runner.api.error("POST", "/runs/claim", 422, json={"wait": -1})
    runner.api.error("POST", "/runs/claim", 422, json={"capacity": 0})
    server.admin.error("GET", "/runs/" + "x" * 101, 404)
    server.admin.error("POST", "/runs/nope/cancel", 404)
    server.admin.error("POST", "/runs/00000000-0000-4000-8000-00000000000a/cancel", 404)
    runner.api.error("POST", "/runs/00000000-0000-4000-8000-00000000000a/diffs", 404,
                     json={"lease": lease, "diffs": [{"writer": "w", "seq": 1, "ops": []}]})
    runner.api.error("POST", f"/runs/{info['id']}/diffs", 422, json={"lease": lease,
                                                                    "diffs": []})
    assert runner.api.ok("GET", f"/runs/{info['id']}")["state"] == {}


@pytest.mark.parametrize("method", ["TRACE", "PUT", "DELETE", "PATCH"])
def test_unsupported_methods_answer_405_with_allow(server: Server, method: str) -> None:
    rid = "00000000-0000-4000-8000-000000000000"
    for path, allowed in (("/runs", {"GET", "POST"}), (f"/runs/{rid}", {"GET"}),
                          (f"/runs/{rid}/diffs", {"POST"}), ("/runs/claim", {"POST"}),
                          ("/runs/report", {"POST"})):
        resp = server.admin.call(method, path)
        assert resp.status_code == 405, (method, path, resp.text)
        assert resp.json()["error"] == "method_not_allowed"
        assert set(resp.headers["Allow"].replace(" ", "").split(",")) == allowed, resp.headers


def test_every_body_endpoint_documents_and_answers_malformed_json(server: Server) -> None:
    from server_stub.cli import openapi_text

    doc = json.loads(openapi_text())
    rid = "00000000-0000-4000-8000-000000000000"
    checked = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if "requestBody" not in op:
                continue
            assert {"400", "413", "422"} <= set(op["responses"]), (method, path)
            resp = server.admin.call(method.upper(), path.removeprefix("/api/v1").replace(
                "{run_id}", rid), data=b"{not json", headers={"Content-Type": "application/json"})
            checked.append(f"{method.upper()} {path} -> {resp.status_code}")
            # the admin token is refused on runner routes before the body is read: 403
            assert resp.status_code in (400, 403), checked[-1]
            if resp.status_code == 400:
                assert resp.json()["error"] == "malformed_json"
    print("\n" + "\n".join(checked))
    assert len(checked) >= 9


@pytest.mark.parametrize(("endpoint", "body"), [
    ("/runs/claim", {"tasks": 0}), ("/runs/claim", {"tasks": "yes"}),
    ("/runs", {"repo": "r", "ref": "main", "workflow_path": "w.yaml", "strict": 1}),
    ("/runs", {"repo": "r", "ref": "main", "workflow_path": "w.yaml", "distributed": "true"}),
])
def test_booleans_must_be_json_booleans(server: Server, endpoint: str, body: dict[str, object],
                                        repo: dict[str, str]) -> None:
    """What the OpenAPI document says is a boolean: pydantic alone would take 0 for false."""
    runner = server.register()
    caller = runner.api if endpoint == "/runs/claim" else server.admin
    resp = caller.call("POST", endpoint, json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"] == "invalid_request"
