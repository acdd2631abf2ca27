"""Two `ferry-server` processes on one PostgreSQL database serve one API: what one replica is
told, the other acts on (claims woken by LISTEN/NOTIFY, cancels, triggers, logs, fencing)."""

from __future__ import annotations

import base64
import secrets
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server_stub.testing import StubProcess
from tests.helpers.gitrepo import make_repo
from tests.protocol.api import WORKFLOW_MANUAL, WORKFLOW_OK, Api, Runner, Server, label


@pytest.fixture
def pair(tmp_path: Path, pg_url: str) -> Iterator[tuple[Server, Server]]:
    """Replicas A and B: same database, tokens and repositories, separate data dirs."""
    admin, reg = "fa_" + secrets.token_urlsafe(16), "fr_" + secrets.token_urlsafe(16)
    repos = tmp_path / "repos"
    make_repo(repos, "demo", {"ok.yaml": WORKFLOW_OK, "manual.yaml": WORKFLOW_MANUAL})
    key = str(tmp_path / "secrets.key")
    procs = [StubProcess(tmp_path / f"data-{n}", repos, "--database", pg_url, "--secrets-key",
                         key, admin_token=admin, registration_token=reg) for n in "ab"]
    try:
        for proc in procs:
            proc.launch()
        a, b = (Server(p.url, admin, reg, repos) for p in procs)
        yield a, b
    finally:
        for proc in procs:
            proc.stop()


def _on(server: Server, runner: Runner) -> Runner:
    """The same runner talking to another replica."""
    return Runner(Api(server.url, runner.api.token), runner.id, runner.labels)


def _create(server: Server, lab: str, workflow: str = "ok.yaml") -> dict[str, Any]:
    return dict(server.admin.ok("POST", "/runs", 201, json={
        "repo": "demo", "ref": "main", "workflow_path": workflow, "labels": [lab]}))


def _claim_in_thread(runner: Runner, wait: float) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(runner.claim(wait=wait)))
    thread.start()
    return thread, got


def test_a_run_created_on_one_replica_wakes_a_claimer_polling_the_other(
        pair: tuple[Server, Server]) -> None:
    a, b = pair
    lab = label()
    runner = b.register([lab])
    # Without a wake from A, B's claimer would answer 204 when its 25 s hold ends.
    thread, got = _claim_in_thread(runner, wait=25)
    created = _create(a, lab)
    thread.join(30)
    assert got and got[0] is not None, "B's claimer was not woken by a run created on A"
    assert got[0]["run"]["id"] == created["id"]


def test_cancel_and_trigger_reach_the_runner_through_any_replica(
        pair: tuple[Server, Server]) -> None:
    a, b = pair
    lab = label()
    runner = b.register([lab])
    run = _create(a, lab)
    claimed = runner.claim()
    assert claimed is not None
    lease = {"lease": claimed["lease"]["token"]}
    runner.api.ok("POST", f"/runs/{run['id']}/start", json=lease)
    a.admin.ok("POST", f"/runs/{run['id']}/cancel")
    beat = runner.api.ok("POST", f"/runs/{run['id']}/heartbeat", json=lease)
    assert beat["cancel_requested"] is True

    # a paused run triggered on B is claimed again by a runner long-polling A
    lab2 = label()
    first = a.register([lab2])
    manual = _create(b, lab2, "manual.yaml")
    got = first.claim()
    assert got is not None
    approve = str(uuid.uuid4())
    task = {"id": approve, "node_id": "approve", "status": "AwaitingTrigger",
            "triggered": False, "master": False}
    assert first.diffs(manual["id"], got["lease"]["token"], [{
        "writer": f"{first.id}/a1", "seq": 1,
        "ops": [{"op": "add", "path": f"/tasks/{approve}", "value": task}]}]).status_code == 200
    _on(b, first).api.ok("POST", f"/runs/{manual['id']}/finish",
                         json={"lease": got["lease"]["token"], "status": "AwaitingTrigger"})
    second = a.register([lab2])
    thread, again = _claim_in_thread(second, wait=25)
    b.admin.ok("POST", f"/runs/{manual['id']}/tasks/{approve}/trigger")
    thread.join(30)
    assert again and again[0] is not None, "the trigger on B did not wake the claimer on A"
    assert again[0]["run"]["id"] == manual["id"] and again[0]["run"]["attempt"] == 2


def test_logs_diffs_and_fencing_hold_across_replicas(pair: tuple[Server, Server]) -> None:
    a, b = pair
    lab = label()
    runner_a = a.register([lab])
    run = _create(a, lab)
    claimed = runner_a.claim()
    assert claimed is not None
    lease = claimed["lease"]["token"]
    runner_b = _on(b, runner_a)
    assert runner_a.log(run["id"], lease, "t1", 0, b"hello ").json()["offset"] == 6
    # B sees A's bytes: a resend that overlaps them is accepted, a different one refused
    assert runner_b.log(run["id"], lease, "t1", 0, b"hello world").json()["offset"] == 11
    bad = runner_b.log(run["id"], lease, "t1", 6, b"WORLD")
    assert bad.status_code == 409 and bad.json()["offset"] == 11
    gap = runner_a.log(run["id"], lease, "t1", 20, b"x")
    assert gap.status_code == 409 and gap.json()["offset"] == 11
    text = a.admin.call("GET", f"/runs/{run['id']}/logs/t1").content
    assert text == b"hello world" == b.admin.call("GET", f"/runs/{run['id']}/logs/t1").content
    assert b.admin.call("GET", f"/runs/{run['id']}/logs/t1?offset=6").content == b"world"

    writer = f"{runner_a.id}/a1"
    op = {"op": "add", "path": "/state/k", "value": 1}
    assert runner_a.diffs(run["id"], lease, [{"writer": writer, "seq": 1, "ops": [op]}]
                          ).status_code == 200
    dup = runner_b.diffs(run["id"], lease, [{"writer": writer, "seq": 1, "ops": [op]}])
    assert dup.status_code == 200 and dup.json()["duplicates"] == 1
    gap_diff = runner_b.diffs(run["id"], lease, [{"writer": writer, "seq": 3, "ops": [op]}])
    assert gap_diff.status_code == 409 and gap_diff.json()["expected_seq"] == 2
    # a lease that is not the current one is fenced on either replica
    for who in (runner_a, runner_b):
        resp = who.diffs(run["id"], "fl_" + "x" * 40, [{"writer": writer, "seq": 2,
                                                        "ops": [op]}])
        assert resp.status_code == 409 and resp.json()["error"] == "lease_lost"
    assert b.admin.ok("GET", f"/runs/{run['id']}")["state"] == {"k": 1}
    _ = base64  # chunks are base64 on the wire: Runner.log encodes them


def test_a_secret_set_on_one_replica_is_handed_out_by_the_other(
        pair: tuple[Server, Server]) -> None:
    a, b = pair
    a.admin.ok("PUT", "/secrets/API_KEY?repo=demo", json={"value": "s3cr3t-value"})
    lab = label()
    _create(a, lab)
    claimed = b.register([lab]).claim()
    assert claimed is not None and claimed["secrets"] == {"API_KEY": "s3cr3t-value"}


def test_a_server_with_another_secrets_key_is_refused(tmp_path: Path, pg_url: str) -> None:
    make_repo(tmp_path / "repos", "demo", {"ok.yaml": WORKFLOW_OK})
    with StubProcess.start(tmp_path / "one", tmp_path / "repos", "--database", pg_url) as one:
        Server(one.url, one.admin_token, one.registration_token, one.repos_dir).admin.ok(
            "PUT", "/secrets/API_KEY", json={"value": "sealed-with-one"})
    other = StubProcess(tmp_path / "two", tmp_path / "repos", "--database", pg_url)
    with pytest.raises(RuntimeError, match="another secrets key"):
        other.launch()


def test_claims_spread_over_replicas_hand_each_run_out_once(pair: tuple[Server, Server]) -> None:
    a, b = pair
    lab = label()
    ids = {_create(a if i % 2 else b, lab)["id"] for i in range(40)}
    claimers = [(a if i % 2 else b).register([lab]) for i in range(10)]
    got: list[str] = []
    lock = threading.Lock()

    def drain(runner: Runner) -> None:
        while True:
            claimed = runner.claim(wait=0)
            if claimed is None:
                return
            with lock:
                got.append(claimed["run"]["id"])

    threads = [threading.Thread(target=drain, args=(r,)) for r in claimers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(got) == sorted(ids), "a run was handed out twice or not at all"
