"""Logs: append by offset, idempotent resends, mismatches answered with the server's offset."""

from __future__ import annotations

import base64

from tests.protocol.api import Server


def test_offsets(server: Server, repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    run_id, r, lease = run.id, run.runner, run.lease
    assert r.log(run_id, lease, "task-1", 0, b"one\n").json() == {"offset": 4}
    assert r.log(run_id, lease, "task-1", 4, b"two\n").json() == {"offset": 8}
    # A resend of what is stored is acknowledged without writing twice.
    assert r.log(run_id, lease, "task-1", 0, b"one\n").json() == {"offset": 8}
    # An overlapping resend only adds its new tail.
    assert r.log(run_id, lease, "task-1", 4, b"two\nthree\n").json() == {"offset": 14}
    gap = r.log(run_id, lease, "task-1", 20, b"x")
    assert gap.status_code == 409
    assert gap.json()["error"] == "offset_mismatch" and gap.json()["offset"] == 14
    differs = r.log(run_id, lease, "task-1", 0, b"ONE\n")
    assert differs.status_code == 409 and differs.json()["offset"] == 14
    admin = server.admin
    assert admin.call("GET", f"/runs/{run_id}/logs/task-1").content == b"one\ntwo\nthree\n"
    assert admin.call("GET", f"/runs/{run_id}/logs/task-1?offset=8").content == b"three\n"
    assert admin.call("GET", f"/runs/{run_id}/logs/other").content == b""
    binary = bytes(range(256))
    assert r.log(run_id, lease, "task-2", 0, binary).json() == {"offset": 256}
    assert admin.call("GET", f"/runs/{run_id}/logs/task-2").content == binary


def test_bad_chunks_are_refused(server: Server, repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    run_id, r, lease = run.id, run.runner, run.lease
    bad = r.api.call("POST", f"/runs/{run_id}/logs",
                     json={"lease": lease, "task": "t", "offset": 0, "data": "%%%not base64"})
    assert bad.status_code == 422 and bad.json()["problems"][0]["path"] == "data"
    for task in ("..", "../x", "a/b", ".hidden", "a\x00b", "x" * 101):
        resp = r.api.call("POST", f"/runs/{run_id}/logs", json={
            "lease": lease, "task": task, "offset": 0, "data": base64.b64encode(b"x").decode()})
        assert resp.status_code == 422, (task, resp.text)
        assert resp.json()["problems"][0]["path"] == "task"
    assert r.log(run_id, lease, "t", -1, b"x").status_code == 422
    assert server.admin.call("GET", f"/runs/{run_id}/logs/t").content == b""
