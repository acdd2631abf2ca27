"""Fault tests over real processes: the server killed and restarted mid-run, the daemon
SIGKILLed mid-run, a proxy failing 30% of requests, two daemons racing for 50 runs."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from tests.helpers import wait_until
from tests.helpers.faultproxy import FaultProxy
from tests.integration.daemon.conftest import Server
from tests.integration.daemon.flows import TRIVIAL, lines, two_tasks


def _tasks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["node_id"]: t for t in doc["tasks"].values() if not t.get("master")}


def _kill_group(pid_file: Path) -> None:
    """What a crashed machine does to the steps of a SIGKILLed daemon."""
    pid = int(pid_file.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(pid), signal.SIGKILL)


def test_server_killed_mid_run_and_restarted(server: Server, make_daemon: Any,
                                             tmp_path: Path) -> None:
    side = tmp_path / "side"
    side.mkdir()
    server.repo("demo", {"wf.yaml": two_tasks()})
    run_id = server.submit("demo", "wf.yaml", params={"dir": str(side)})
    daemon = make_daemon(server)
    daemon.register()
    daemon.start("--once")
    wait_until(lambda: lines(side / "second-start"), timeout=60, message="second task started")
    server.kill()
    (side / "gate").touch()  # the run goes on to its end while the server is down
    wait_until(lambda: lines(side / "second-done"), timeout=30, message="second task done")
    journal = daemon.home / "data" / "journal" / f"{run_id}.jsonl"
    wait_until(lambda: journal.exists() and '"finish"' in journal.read_text(), timeout=30,
               message="finish record journaled while offline")
    assert daemon.proc.poll() is None, "the daemon waits to deliver, it does not give up"
    server.start()
    assert daemon.wait(90) == 0, daemon.log()[-3000:]
    doc = server.run(run_id)
    assert doc["status"] == "Completed"
    assert doc["state"]["seen"] == ["first", "second"], "a diff was lost or applied twice"
    tasks = _tasks(doc)
    assert {n: t["status"] for n, t in tasks.items()} == {"first": "Completed",
                                                          "second": "Completed"}
    for task in tasks.values():
        local = daemon.home / "data" / "logs" / run_id / f"{task['id']}.log"
        assert server.task_log(run_id, task["id"]) == local.read_bytes()
    assert server.task_log(run_id, tasks["second"]["id"]) == b"second started\nsecond done\n"
    assert len(lines(side / "first")) == 1 and len(lines(side / "second-done")) == 1
    assert not journal.exists(), "everything acknowledged, journal removed"
    assert server.info(run_id)["queue"] == "done"


def test_daemon_sigkilled_mid_run_another_daemon_finishes(tmp_path: Path,
                                                          make_daemon: Any) -> None:
    server = Server(tmp_path / "server", lease_ttl=1, offline_grace=1)
    server.start()
    try:
        side = tmp_path / "side"
        side.mkdir()
        server.repo("demo", {"wf.yaml": two_tasks()})
        run_id = server.submit("demo", "wf.yaml", params={"dir": str(side)})
        first = make_daemon(server, "first")
        first.register()
        first.start()
        wait_until(lambda: (side / "second.pid").exists() and lines(side / "second-start"),
                   timeout=60, message="second task started on the first daemon")
        wait_until(lambda: _tasks(server.run(run_id))["first"]["status"] == "Completed",
                   timeout=30, message="first task reported")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        _kill_group(side / "second.pid")
        (side / "gate").touch()
        second = make_daemon(server, "second")
        second.register()
        second.start("--once")
        assert second.wait(90) == 0, second.log()[-3000:]
        doc = server.run(run_id)
        assert doc["status"] == "Completed"
        assert server.info(run_id)["attempt"] == 2
        assert lines(side / "first") == [f"first {run_id}"], "completed task re-run"
        assert len(lines(side / "second-start")) == 2  # interrupted, so run again
        assert len(lines(side / "second-done")) == 1
        tasks = _tasks(doc)
        assert tasks["second"]["interrupted"] == 1
        assert doc["state"]["seen"] == ["first", "second"]
    finally:
        server.kill()


def test_runs_complete_exactly_once_through_a_30_percent_faulty_network(
        tmp_path: Path, make_daemon: Any) -> None:
    server = Server(tmp_path / "server", lease_ttl=2, offline_grace=1)
    server.start()
    try:
        side = tmp_path / "side"
        side.mkdir()
        server.repo("demo", {"wf.yaml": two_tasks(gate=False)})
        runs = [server.submit("demo", "wf.yaml", params={"dir": str(side)}) for _ in range(4)]
        with FaultProxy(("127.0.0.1", server.port), rate=0.3, seed=7) as proxy:
            daemon = make_daemon(server)
            daemon.register()
            daemon.set_server(proxy.url)
            daemon.start("--concurrency", "2")
            wait_until(lambda: all(server.queues()[r] == "done" for r in runs),
                       timeout=150, interval=0.5, message="all runs done through the proxy")
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(60) == 0, daemon.log()[-3000:]
            assert proxy.outcomes["500"] > 0 and proxy.outcomes["drop"] > 0
        for run_id in runs:
            doc = server.run(run_id)
            assert doc["status"] == "Completed", (run_id, doc["status"], doc.get("error"))
            assert doc["state"]["seen"] == ["first", "second"], run_id
        done = lines(side / "second-done")
        assert sorted(done) == sorted(f"second {r}" for r in runs), "a run executed twice"
        assert sorted(lines(side / "first")) == sorted(f"first {r}" for r in runs)
    finally:
        server.kill()


def test_two_daemons_fifty_runs_each_exactly_once(server: Server, make_daemon: Any,
                                                  tmp_path: Path) -> None:
    side = tmp_path / "side"
    side.mkdir()
    server.repo("demo", {"wf.yaml": TRIVIAL})
    runs = [server.submit("demo", "wf.yaml", params={"dir": str(side)}) for _ in range(50)]
    daemons = [make_daemon(server, f"d{i}") for i in range(2)]
    for d in daemons:
        d.register()
        d.start("--concurrency", "2")
    wait_until(lambda: len(lines(side / "runs")) >= 50, timeout=120, interval=0.25,
               message="50 runs executed")
    wait_until(lambda: all(q == "done" for q in server.queues().values()), timeout=60,
               interval=0.25, message="50 runs finished")
    for d in daemons:
        d.signal(signal.SIGTERM)
    assert [d.wait(60) for d in daemons] == [0, 0]
    assert sorted(lines(side / "runs")) == sorted(runs), "a run executed twice or never"
    assert all(server.status(r) == "Completed" for r in runs)
    claimed = [len(d.logged("run claimed")) for d in daemons]
    assert sum(claimed) == 50 and all(c > 0 for c in claimed), claimed
