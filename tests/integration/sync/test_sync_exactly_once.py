"""Exactly-once delivery against the real stub server: offline runs, a server killed mid-sync,
and a proxy that fails 30% of requests."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from runner.api.client import ControlClient
from runner.api.retry import RetryPolicy
from runner.diff import Diff
from runner.document import (
    add_task_op,
    new_run,
    new_task,
    run_field_op,
    state_set_op,
    task_field_op,
)
from runner.state import sync as sync_module
from runner.state.api import ApiBackend
from runner.state.journal import Journal
from runner.state.replay import sync_all
from runner.state.sync import Syncer
from tests.helpers import wait_until
from tests.helpers.faultproxy import FaultProxy
from tests.integration.sync.conftest import StubServer

FAST = RetryPolicy(max_attempts=None, initial=0.02, backoff_factor=2.0, max_wait=0.2)
WRITER = "local"


def _work(backend: ApiBackend, *, tasks: int = 5, steps: int = 10) -> str:
    """A run with `tasks` tasks, each with `steps` state writes and log lines; returns its id."""
    doc = new_run({"version": "1", "nodes": []}, name="sync-test", params={"p": "v"},
                  created_at="2026-01-01T00:00:00Z")
    backend.create_run(doc)
    run_id = str(doc["id"])
    seq = 0

    def write(*ops: dict[str, Any]) -> None:
        nonlocal seq
        seq += 1
        assert backend.apply(Diff(run_id=run_id, writer=WRITER, seq=seq, ops=list(ops)))

    write(run_field_op("status", "Running"))
    for t in range(tasks):
        task = new_task(f"node-{t}")
        write(add_task_op(task))
        write(task_field_op(task["id"], "status", "Running"))
        for s in range(steps):
            write(state_set_op(f"k{t}-{s}", {"t": t, "s": s, "text": "é" * s}))
            backend.append_log(run_id, task["id"], f"task {t} line {s} ✓\n".encode() * (s + 1))
        write(task_field_op(task["id"], "status", "Completed"))
    write(run_field_op("status", "Completed"), run_field_op("ended_at", "2026-01-01T00:01:00Z"))
    backend.finish(run_id, "Completed")
    return run_id


def _assert_delivered(stub: StubServer, backend: ApiBackend, run_id: str) -> None:
    local = backend.load(run_id)
    remote = stub.admin_get(f"/runs/{run_id}?history=true").json()
    history = remote.pop("history")
    assert remote == local
    mine = [(d["writer"], d["seq"]) for d in history if d["writer"] == WRITER]
    assert Counter(mine).most_common(1)[0][1] == 1, "a diff was applied twice"
    assert [s for _, s in mine] == list(range(1, len(backend.history(run_id)) + 1))
    for task_id in local["tasks"]:
        server_log = stub.admin_get(f"/runs/{run_id}/logs/{task_id}").content
        assert server_log == backend.read_log(run_id, task_id) and server_log


def test_run_reported_while_server_down_is_delivered_once_when_it_starts(
        stub: StubServer, tmp_path: Path) -> None:
    stub.start()
    _, token = stub.register()
    stub.kill()
    client = ControlClient(stub.url, token, timeout=5)
    backend = ApiBackend(client, tmp_path / "journal", tmp_path / "logs", policy=FAST)
    try:
        run_id = _work(backend)
        journal = tmp_path / "journal" / f"{run_id}.jsonl"
        assert journal.exists() and not backend.flush(run_id, timeout=0.3)
        # everything waits: create, diffs, logs, finish
        assert Journal(journal, readonly=True).backlog() > 60
        stub.start()
        assert backend.flush(run_id, timeout=60)
        _assert_delivered(stub, backend, run_id)
        assert stub.admin_get(f"/runs/{run_id}").json()["status"] == "Completed"
        assert not journal.exists()  # all acknowledged: deleted
    finally:
        backend.close()


def test_server_killed_mid_sync_then_restarted(stub: StubServer, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_module, "WINDOW", 10)  # many rounds: the kill lands mid-journal
    stub.start()
    _, token = stub.register()
    stub.kill()
    client = ControlClient(stub.url, token, timeout=5)
    backend = ApiBackend(client, tmp_path / "journal", tmp_path / "logs", policy=FAST,
                         background=False)
    run_id = _work(backend, tasks=10, steps=12)  # ~300 records, all offline
    backend.close()  # hands the journal over (its owner's lock) as a process exit would
    path = tmp_path / "journal" / f"{run_id}.jsonl"
    total = Journal(path, readonly=True).backlog()
    stub.start()
    stop = threading.Event()
    syncer = Syncer(client, Journal(path), policy=FAST, stop_event=stop)
    result: list[BaseException] = []

    def run() -> None:
        try:
            syncer.sync()
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_until(lambda: syncer.journal.acked > 0, timeout=30, message="some records acked")
    stub.kill()  # mid-sync: the syncer backs off and keeps trying
    assert syncer.journal.backlog() > 0
    stub.start()
    thread.join(60)
    assert not thread.is_alive() and not result
    assert syncer.delivered + (total - syncer.delivered) == total
    assert not path.exists()
    _assert_delivered(stub, backend, run_id)


def test_thirty_percent_faults_still_exactly_once(stub: StubServer, tmp_path: Path) -> None:
    stub.start()
    _, token = stub.register()
    with FaultProxy(("127.0.0.1", stub.port), rate=0.3, seed=7) as proxy:
        client = ControlClient(proxy.url, token, timeout=10)
        backend = ApiBackend(client, tmp_path / "journal", tmp_path / "logs", policy=FAST)
        try:
            run_id = _work(backend, tasks=8, steps=12)
            assert backend.flush(run_id, timeout=90)
        finally:
            backend.close()
        assert proxy.outcomes["drop"] >= 5 and proxy.outcomes["500"] >= 5
    _assert_delivered(stub, backend, run_id)


def test_sync_all_delivers_every_journal_left_behind(stub: StubServer, tmp_path: Path) -> None:
    stub.start()
    _, token = stub.register()
    stub.kill()
    client = ControlClient(stub.url, token, timeout=5)
    backend = ApiBackend(client, tmp_path / "journal", tmp_path / "logs", background=False)
    runs = [_work(backend, tasks=2, steps=3) for _ in range(3)]
    busy = sync_all(tmp_path / "journal", client, policy=FAST)
    assert [r.skipped for r in busy.results] == ["in use by another ferry process"] * 3
    assert busy.delivered == 0 and busy.ok  # the owner delivers them, not us
    backend.close()  # as the owning process exiting would
    report = sync_all(tmp_path / "journal", client,
                      policy=RetryPolicy(max_attempts=2, initial=0.01, max_wait=0.02))
    assert report.unreachable and report.remaining > 0 and report.delivered == 0
    stub.start()
    report = sync_all(tmp_path / "journal", client, policy=FAST)
    assert report.ok and report.remaining == 0 and len(report.results) == 3
    for run_id in runs:
        _assert_delivered(stub, backend, run_id)
    again = sync_all(tmp_path / "journal", client, policy=FAST)
    assert again.results == []  # nothing left behind


def test_a_damaged_journal_ends_its_run_and_does_not_stop_the_others(
        stub: StubServer, tmp_path: Path) -> None:
    stub.start()
    _, token = stub.register()
    stub.kill()
    client = ControlClient(stub.url, token, timeout=5)
    backend = ApiBackend(client, tmp_path / "journal", tmp_path / "logs", background=False)
    good = [_work(backend, tasks=1, steps=2) for _ in range(2)]
    damaged = _work(backend, tasks=1, steps=2)
    harmless = _work(backend, tasks=1, steps=2)
    backend.close()
    path = tmp_path / "journal" / f"{damaged}.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    assert b'"kind":"diff"' in lines[3] and b'"Running"' in lines[3]  # task Running
    lines[3] = lines[3].replace(b'"Running"', b'"Runnin9"')  # a flipped byte, still JSON
    path.write_bytes(b"".join(lines))
    other = tmp_path / "journal" / f"{harmless}.jsonl"
    kept = other.read_bytes().splitlines(keepends=True)
    other.write_bytes(kept[0] + b"{not json\n" + b"".join(kept[1:]))  # no record lost
    stub.start()
    report = sync_all(tmp_path / "journal", client, policy=FAST)
    by_run = {r.run_id: r for r in report.results}
    broken = by_run[damaged]
    assert broken.damage == ["line 4: checksum mismatch"]
    assert broken.delivered == 3, "the records before the damage are delivered"
    assert broken.aside is not None and broken.aside.parent == tmp_path / "journal" / "damaged"
    assert broken.run_ended and "record 4" in (broken.reason or "")
    doc = stub.admin_get(f"/runs/{damaged}").json()
    assert doc["status"] == "Failed" and "damaged" in doc["error"]
    assert "line 4: checksum mismatch" in broken.describe()
    assert by_run[harmless].damage == ["line 2: no checksum"]
    assert by_run[harmless].error is None and by_run[harmless].aside is None
    for run_id in (*good, harmless):
        assert by_run[run_id].error is None and by_run[run_id].remaining == 0
        assert stub.admin_get(f"/runs/{run_id}").json()["status"] == "Completed"
    assert report.ok  # every journal is settled: delivered, or ended and set aside
    assert not path.exists() and list((tmp_path / "journal").glob("*.jsonl")) == []
