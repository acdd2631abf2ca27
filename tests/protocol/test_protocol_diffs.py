"""Diffs: applied in order, idempotent per (writer, seq), gaps refused, each diff atomic."""

from __future__ import annotations

from typing import Any

from tests.protocol.api import Server, op_state


def _d(writer: str, seq: int, *ops: dict[str, Any]) -> dict[str, Any]:
    return {"writer": writer, "seq": seq, "ops": list(ops)}


def test_batch_is_applied_and_resending_is_idempotent(server: Server,
                                                      repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    run_id, runner, lease, w = run.id, run.runner, run.lease, run.writer
    batch = [_d(w, 1, op_state("n", 1)), _d(w, 2, {"op": "replace", "path": "/state/n",
                                                   "value": 2}),
             _d(w, 3, op_state("list", []), {"op": "add", "path": "/state/list/-", "value": "a"})]
    ack = runner.diffs(run_id, lease, batch).json()
    assert ack == {"applied": 3, "duplicates": 0, "next_seq": {w: 4}}
    again = runner.diffs(run_id, lease, batch).json()
    assert again == {"applied": 3, "duplicates": 3, "next_seq": {w: 4}}
    doc = runner.api.ok("GET", f"/runs/{run_id}?history=true")
    assert doc["state"] == {"n": 2, "list": ["a"]}
    assert [(h["writer"], h["seq"]) for h in doc["history"]] == [(w, 1), (w, 2), (w, 3)]


def test_writers_are_independent(server: Server, repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    run_id, runner, lease, w = run.id, run.runner, run.lease, run.writer
    other = w + "-b"
    ack = runner.diffs(run_id, lease, [_d(w, 1, op_state("a", 1)),
                                       _d(other, 1, op_state("b", 1))]).json()
    assert ack["next_seq"] == {w: 2, other: 2}


def test_gap_is_refused_with_the_expected_seq(server: Server, repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    run_id, runner, lease, w = run.id, run.runner, run.lease, run.writer
    resp = runner.diffs(run_id, lease, [_d(w, 1, op_state("a", 1)), _d(w, 3, op_state("c", 3))])
    assert resp.status_code == 409
    body = resp.json()
    assert body["error"] == "seq_gap" and body["expected_seq"] == 2 and body["applied"] == 1
    assert runner.api.ok("GET", f"/runs/{run_id}")["state"] == {"a": 1}  # the prefix stays
    resp = runner.diffs(run_id, lease, [_d(w, 5, op_state("e", 5))])
    assert resp.status_code == 409 and resp.json()["expected_seq"] == 2


def test_a_diff_that_does_not_apply_writes_nothing(server: Server,
                                                   repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    run_id, runner, lease, w = run.id, run.runner, run.lease, run.writer
    assert runner.diffs(run_id, lease, [_d(w, 1, op_state("a", 1))]).status_code == 200
    bad = _d(w, 3, op_state("half", "written"),
             {"op": "replace", "path": "/tasks/missing/status", "value": "Running"})
    resp = runner.diffs(run_id, lease, [_d(w, 2, op_state("b", 2)), bad])
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"] == "diff_conflict" and resp.json()["applied"] == 1
    doc = runner.api.ok("GET", f"/runs/{run_id}?history=true")
    assert doc["state"] == {"a": 1, "b": 2}  # diff 3 (both its ops) left no trace
    assert [h["seq"] for h in doc["history"]] == [1, 2]
    # The writer goes on from 3 with a diff that applies.
    ok = runner.diffs(run_id, lease, [_d(w, 3, op_state("c", 3))])
    assert ok.status_code == 200 and ok.json()["next_seq"] == {w: 4}


def test_test_op_failure_and_protected_paths(server: Server, repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    run_id, runner, lease, w = run.id, run.runner, run.lease, run.writer
    resp = runner.diffs(run_id, lease, [_d(w, 1, {"op": "test", "path": "/status",
                                                  "value": "Completed"})])
    assert resp.status_code == 422
    for op in ({"op": "replace", "path": "/id", "value": "x"},
               {"op": "replace", "path": "", "value": {}},
               {"op": "remove", "path": ""},
               {"op": "frobnicate", "path": "/state/x"},
               {"op": "add", "value": 1}):
        resp = runner.diffs(run_id, lease, [_d(w, 1, op)])
        assert resp.status_code == 422, (op, resp.text)
    assert runner.api.ok("GET", f"/runs/{run_id}")["id"] == run_id


def test_the_server_writer_is_reserved(server: Server, repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    run_id, runner, lease = run.id, run.runner, run.lease
    resp = runner.diffs(run_id, lease, [_d("server", 1, op_state("x", 1))])
    assert resp.status_code == 403


def test_lease_is_required_and_checked(server: Server, repo: dict[str, str]) -> None:
    run = server.leased_run(repo["name"])
    run_id, runner, w = run.id, run.runner, run.writer
    assert runner.diffs(run_id, None, [_d(w, 1, op_state("x", 1))]).status_code == 400
    resp = runner.diffs(run_id, "forged", [_d(w, 1, op_state("x", 1))])
    assert resp.status_code == 409 and resp.json()["error"] == "lease_lost"
    assert runner.api.ok("GET", f"/runs/{run_id}")["state"] == {}
