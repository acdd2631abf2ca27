"""Bounded documents: a batch that would pass a size limit is refused with 413 naming the limit,
before anything of it is stored; `copy` cannot amplify a small request into a huge document."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from runner.document import new_run
from runner.limits import MAX_OPS_PER_BATCH, MAX_STATE_VALUE_BYTES
from server_stub.testing import StubProcess
from tests.protocol.api import Api, Runner, Server, op_state

RSS_MARGIN = 100 * 1024 * 1024  # the attack grew the server by ~800 MB before the limits


def _reported(runner: Runner) -> str:
    """A run the runner reports itself: no lease, no queue (what an attacker can make)."""
    workflow = {"version": "1", "nodes": [{"id": "a", "steps": [{"run": "true"}]}]}
    doc = new_run(workflow, name="x", params={}, created_at="2024-01-01T00:00:00Z",
                  run_id=str(uuid.uuid4()))
    return str(runner.api.ok("POST", "/runs/report", 201, json={"run": doc})["id"])


def _amplification(writer: str, seq: int = 1) -> dict[str, Any]:
    """~2 KB: one 1.5 KB array, then 19 copies of itself into itself (2**19 x 1.5 KB)."""
    ops = [{"op": "add", "path": "/x", "value": ["A" * 1500]}]
    ops += [{"op": "copy", "from": "/x", "path": "/x/-"}] * 19
    return {"writer": writer, "seq": seq, "ops": ops}


@pytest.fixture
def own_stub(tmp_path: Path, is_stub: bool) -> Iterator[StubProcess]:
    """A private stub at the default limits (its memory is measured)."""
    if not is_stub:
        pytest.skip("measures the stub's memory")
    with StubProcess.start(tmp_path / "data", tmp_path / "repos") as stub:
        yield stub


def _server(stub: StubProcess) -> Server:
    return Server(stub.url, stub.admin_token, stub.registration_token, stub.repos_dir)


def _rss(stub: StubProcess) -> int:
    return int(psutil.Process(stub.proc.pid).memory_info().rss)


def test_copy_amplification_is_refused_fast_and_costs_no_memory(own_stub: StubProcess) -> None:
    server = _server(own_stub)
    attacker, bystander = server.register(), server.register()
    run_id = _reported(attacker)
    quiet_id = _reported(bystander)
    assert len(str(_amplification("w")).encode()) < 2500
    before = _rss(own_stub)
    stop = threading.Event()
    answers: list[tuple[int, float]] = []

    def keep_writing() -> None:  # another runner's small writes go on meanwhile
        api = Api(server.url, bystander.api.token)
        seq = 0
        while not stop.is_set():
            seq += 1
            t0 = time.monotonic()
            resp = api.call("POST", f"/runs/{quiet_id}/diffs", timeout=30, json={
                "diffs": [{"writer": "b", "seq": seq, "ops": [op_state("n", seq)]}]})
            answers.append((resp.status_code, time.monotonic() - t0))

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        t0 = time.monotonic()
        resp = attacker.diffs(run_id, None, [_amplification("w")])
        took = time.monotonic() - t0
        # and once more: the refusal is repeatable, memory does not creep
        again = attacker.diffs(run_id, None, [_amplification("w")])
    finally:
        stop.set()
        thread.join(60)
    after = _rss(own_stub)
    print(f"\namplification refused in {took:.2f}s with {resp.status_code}; RSS "
          f"{before / 2**20:.0f} -> {after / 2**20:.0f} MB; {len(answers)} writes meanwhile,"
          f" slowest {max(t for _, t in answers):.2f}s")
    assert resp.status_code == 413, resp.text
    body = resp.json()
    assert body["error"] == "batch_too_large" and body["limit"] == MAX_STATE_VALUE_BYTES
    assert str(MAX_STATE_VALUE_BYTES) in body["message"] and body["applied"] == 0
    assert again.status_code == 413
    assert answers and all(code == 200 for code, _ in answers), answers
    assert after - before < RSS_MARGIN, (before, after)
    doc = server.admin.ok("GET", f"/runs/{run_id}?history=true")
    assert "x" not in doc and doc["history"] == []  # the run is untouched
    # the writer's seq was not consumed: a sane diff 1 still applies
    ok = attacker.diffs(run_id, None, [{"writer": "w", "seq": 1, "ops": [op_state("k", 1)]}])
    assert ok.status_code == 200, ok.text


def test_a_state_value_over_the_limit_is_refused_and_nothing_is_stored(server: Server) -> None:
    runner = server.register()
    run_id = _reported(runner)
    big = "v" * MAX_STATE_VALUE_BYTES  # its JSON has two quotes more than the limit
    resp = runner.diffs(run_id, None, [
        {"writer": "w", "seq": 1, "ops": [op_state("small", 1)]},
        {"writer": "w", "seq": 2, "ops": [op_state("big", big)]}])
    assert resp.status_code == 413, resp.text
    body = resp.json()
    assert body["error"] == "value_too_large" and body["limit"] == MAX_STATE_VALUE_BYTES
    assert "'big'" in body["message"] and str(MAX_STATE_VALUE_BYTES) in body["message"]
    assert body["applied"] == 0
    doc = server.admin.ok("GET", f"/runs/{run_id}?history=true")
    assert doc["state"] == {} and doc["history"] == []
    # at the limit it is accepted, in a task's outputs too
    exact = "v" * (MAX_STATE_VALUE_BYTES - 2)
    resp = runner.diffs(run_id, None, [{"writer": "w", "seq": 1,
                                        "ops": [op_state("big", exact)]}])
    assert resp.status_code == 200, resp.text
    task = {"op": "add", "path": "/tasks/t1", "value": {"status": "Running", "outputs": {}}}
    out = {"op": "add", "path": "/tasks/t1/outputs/o", "value": [exact, 1]}
    resp = runner.diffs(run_id, None, [{"writer": "w", "seq": 2, "ops": [task, out]}])
    assert resp.status_code == 413 and "output 'o'" in resp.json()["message"], resp.text


def test_too_many_ops_in_a_batch_are_refused_before_any_is_applied(server: Server) -> None:
    runner = server.register()
    run_id = _reported(runner)
    per = MAX_OPS_PER_BATCH // 2 + 1
    ops = [{"op": "test", "path": "/status", "value": "Pending"}] * per
    resp = runner.diffs(run_id, None, [{"writer": "w", "seq": 1, "ops": ops},
                                       {"writer": "w", "seq": 2, "ops": ops}])
    assert resp.status_code == 413, resp.text
    assert resp.json()["error"] == "batch_too_large"
    assert resp.json()["limit"] == MAX_OPS_PER_BATCH
    assert server.admin.ok("GET", f"/runs/{run_id}?history=true")["history"] == []


def test_the_document_limit_holds_across_batches(tmp_path: Path, is_stub: bool) -> None:
    if not is_stub:
        pytest.skip("sets the stub's --max-document")
    limit = 64 * 1024
    with StubProcess.start(tmp_path / "data", tmp_path / "repos", "--max-document",
                           str(limit)) as stub:
        server = _server(stub)
        runner = server.register()
        run_id = _reported(runner)
        chunk = "c" * (limit // 3)
        statuses = []
        for seq in (1, 2, 3, 4):
            resp = runner.diffs(run_id, None, [{"writer": "w", "seq": seq,
                                                "ops": [{"op": "add", "path": f"/p{seq}",
                                                         "value": chunk}]}])
            statuses.append(resp.status_code)
            if resp.status_code != 200:
                body = resp.json()
                assert body["error"] == "document_too_large" and body["limit"] == limit
                break
        assert statuses == [200, 200, 413], statuses
        doc = requests.get(f"{stub.url}/api/v1/runs/{run_id}", headers=stub.admin_headers,
                           timeout=30).json()
        assert "p3" not in doc and len(str(doc)) < limit
        # the server's own small writes still land on a full document: finish works
        fin = runner.api.ok("POST", f"/runs/{run_id}/finish", json={"status": "Completed"})
        assert fin["status"] == "Completed"


def test_copies_within_the_budget_apply_and_past_it_are_refused(server: Server) -> None:
    runner = server.register()
    run_id = _reported(runner)
    part = "p" * (MAX_STATE_VALUE_BYTES * 6 // 10)
    assert runner.diffs(run_id, None, [{"writer": "w", "seq": 1, "ops": [
        op_state("a", part)]}]).status_code == 200
    copy_b = {"op": "copy", "from": "/state/a", "path": "/state/b"}
    copy_c = {"op": "copy", "from": "/state/a", "path": "/state/c"}
    resp = runner.diffs(run_id, None, [{"writer": "w", "seq": 2, "ops": [copy_b]},
                                       {"writer": "w", "seq": 3, "ops": [copy_c]}])
    assert resp.status_code == 413 and resp.json()["error"] == "batch_too_large", resp.text
    # refused at the diff that passed the budget; the diffs before it are kept (as a conflict)
    assert resp.json()["applied"] == 1
    assert set(server.admin.ok("GET", f"/runs/{run_id}")["state"]) == {"a", "b"}
    resp = runner.diffs(run_id, None, [{"writer": "w", "seq": 3, "ops": [copy_c]}])
    assert resp.status_code == 200, resp.text  # the budget is per batch
    assert server.admin.ok("GET", f"/runs/{run_id}")["state"]["c"] == part
