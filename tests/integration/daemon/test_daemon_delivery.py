"""Delivery that cannot be stranded and shutdown that ends, over real processes: a run finished
while the server was down is delivered by `ferry sync` or the next daemon start after the daemon
stopped; SIGTERM and --once give up after the drain timeout and say what waits; a second signal
stops at once; an outage is one warning and one line when it is over; a journal whose lease was
superseded is moved aside with one line."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers import wait_until
from tests.integration.daemon.conftest import REPO_ROOT, DaemonProc, Server
from tests.integration.daemon.flows import lines, two_tasks


def _tasks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["node_id"]: t for t in doc["tasks"].values() if not t.get("master")}


def _journals(daemon: DaemonProc) -> list[Path]:
    return sorted((daemon.home / "data" / "journal").glob("*.jsonl"))


def _sync(daemon: DaemonProc) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "sync"], cwd=REPO_ROOT,
                          env=daemon.env, capture_output=True, text=True, timeout=120)


def _finished_offline(server: Server, daemon: DaemonProc, side: Path, run_id: str) -> None:
    """The daemon runs the run; the server is killed mid-run, once it has the first task's
    end (else a later attempt rightly runs that task again: at least once until the server has
    its end); the run ends offline."""
    wait_until(lambda: lines(side / "second-start"), timeout=60, message="second task started")
    wait_until(lambda: _tasks(server.run(run_id))["first"]["status"] == "Completed", timeout=30,
               message="the first task's end on the server")
    server.kill()
    (side / "gate").touch()
    wait_until(lambda: lines(side / "second-done"), timeout=30, message="second task done")
    journal = daemon.home / "data" / "journal" / f"{run_id}.jsonl"
    wait_until(lambda: journal.exists() and b'"finish"' in journal.read_bytes(), timeout=30,
               message="finish record journaled while offline")


def _assert_completed_once(server: Server, daemon: DaemonProc, side: Path, run_id: str) -> None:
    doc = server.run(run_id)
    assert doc["status"] == "Completed", doc["status"]
    assert doc["state"]["seen"] == ["first", "second"], "a diff was lost or applied twice"
    tasks = _tasks(doc)
    assert {n: t["status"] for n, t in tasks.items()} == {"first": "Completed",
                                                          "second": "Completed"}
    for task in tasks.values():
        local = daemon.home / "data" / "logs" / run_id / f"{task['id']}.log"
        assert server.task_log(run_id, task["id"]) == local.read_bytes()
    assert len(lines(side / "first")) == 1 and len(lines(side / "second-done")) == 1
    assert server.info(run_id)["queue"] == "done"
    assert _journals(daemon) == [], "everything acknowledged: no journal left"


def _setup(server: Server, make_daemon: Any, tmp_path: Path, name: str) -> tuple[
        DaemonProc, Path, str]:
    side = tmp_path / f"side-{name}"
    side.mkdir()
    server.repo(name, {"wf.yaml": two_tasks()})
    run_id = server.submit(name, "wf.yaml", params={"dir": str(side)}, labels=[name])
    daemon = make_daemon(server, name)
    daemon.register(labels=name)
    return daemon, side, run_id


def test_sigterm_ends_within_the_drain_timeout_and_ferry_sync_delivers_later(
        server: Server, make_daemon: Any, tmp_path: Path) -> None:
    daemon, side, run_id = _setup(server, make_daemon, tmp_path, "term-sync")
    daemon.start("--drain-timeout", "2s")
    _finished_offline(server, daemon, side, run_id)
    began = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log()[-3000:]
    assert time.monotonic() - began < 20  # the drain timeout (2 s) plus shutting down
    waiting = [e for e in daemon.events() if "wait in" in str(e.get("msg"))]
    assert waiting and "the next 'ferry daemon' start or 'ferry sync' delivers them" in \
        waiting[-1]["msg"], daemon.log()[-3000:]
    stopped = daemon.logged("daemon stopped")[-1]
    assert stopped["exit"] == 0 and stopped["waiting"] > 0
    assert _journals(daemon), "the records wait in the journal"
    server.start()
    result = _sync(daemon)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"run {run_id}: " in result.stdout and ", 0 left" in result.stdout
    _assert_completed_once(server, daemon, side, run_id)
    again = _sync(daemon)  # nothing left: a second sync delivers nothing twice
    assert again.returncode == 0 and "Synced 0 journal(s)" in again.stdout
    _assert_completed_once(server, daemon, side, run_id)


def test_the_next_daemon_start_delivers_a_stopped_daemons_journal(
        server: Server, make_daemon: Any, tmp_path: Path) -> None:
    daemon, side, run_id = _setup(server, make_daemon, tmp_path, "restart")
    daemon.start("--drain-timeout", "1s")
    _finished_offline(server, daemon, side, run_id)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log()[-3000:]
    server.start()
    daemon.start("--idle-timeout", "2s")
    assert daemon.wait(60) == 0, daemon.log()[-3000:]
    delivered = [e for e in daemon.events()
                 if str(e.get("msg")).startswith("journal delivered")]
    assert any(e.get("run") == run_id and e.get("when") == "start" for e in delivered), \
        daemon.log()[-3000:]
    _assert_completed_once(server, daemon, side, run_id)


def test_once_with_the_server_gone_exits_7_and_says_what_waits(
        server: Server, make_daemon: Any, tmp_path: Path) -> None:
    daemon, side, run_id = _setup(server, make_daemon, tmp_path, "once-down")
    daemon.start("--once", "--drain-timeout", "2s")
    _finished_offline(server, daemon, side, run_id)
    assert daemon.wait(40) == 7, daemon.log()[-3000:]
    stopped = daemon.logged("daemon stopped")[-1]
    assert stopped["exit"] == 7, "the log says the real exit code"
    assert any("record(s) of the run wait in the journal" in str(e.get("msg"))
               for e in daemon.events())
    server.start()
    assert _sync(daemon).returncode == 0
    _assert_completed_once(server, daemon, side, run_id)


def test_a_second_sigterm_stops_at_once_and_keeps_the_journal(
        server: Server, make_daemon: Any, tmp_path: Path) -> None:
    daemon, side, _ = _setup(server, make_daemon, tmp_path, "twice")
    daemon.start("--drain-timeout", "10m")
    wait_until(lambda: lines(side / "second-start"), timeout=60, message="second task started")
    server.kill()  # nothing could be delivered anyway
    daemon.signal(signal.SIGTERM)
    wait_until(lambda: daemon.logged("draining: no new claims"), timeout=10,
               message="draining")
    began = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 130, daemon.log()[-3000:]
    assert time.monotonic() - began < 15  # the step's grace (5 s) and no waiting for the server
    assert daemon.logged("daemon stopped")[-1]["exit"] == 130
    assert _journals(daemon), "the journal is kept"
    pid = int((side / "second.pid").read_text())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 0)
        raise AssertionError("the step outlived the daemon")


def test_an_outage_is_one_warning_and_one_line_when_it_is_over(
        server: Server, make_daemon: Any, tmp_path: Path) -> None:
    daemon, side, run_id = _setup(server, make_daemon, tmp_path, "outage")
    daemon.start("--once")
    wait_until(lambda: lines(side / "second-start"), timeout=60, message="second task started")
    server.kill()
    wait_until(lambda: [e for e in daemon.events()
                        if str(e.get("msg")).startswith("lost contact")],
               timeout=30, message="the outage noticed")
    time.sleep(3)  # a while longer offline: heartbeats keep failing (and back off)
    (side / "gate").touch()
    wait_until(lambda: lines(side / "second-done"), timeout=30, message="second task done")
    server.start()
    assert daemon.wait(90) == 0, daemon.log()[-3000:]
    events = daemon.events()
    claimed = next(i for i, e in enumerate(events) if e.get("msg") == "run claimed")
    loud = [e["msg"] for e in events[claimed:] if e.get("level") in ("warning", "error")]
    assert len(loud) == 1, loud
    assert loud[0].startswith(f"lost contact with the control plane at {server.url}: ")
    back = [e for e in daemon.events() if str(e.get("msg")).startswith(
        f"contact with the control plane at {server.url} is back after ")]
    assert len(back) == 1 and back[0]["delivered"] > 0, daemon.log()[-3000:]
    assert server.status(run_id) == "Completed"


def test_a_superseded_journal_is_moved_aside_with_one_line(tmp_path: Path,
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
        _finished_offline(server, first, side, run_id)  # its end waits in the journal
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        server.start()
        second = make_daemon(server, "second")
        second.register()
        second.start("--once")
        assert second.wait(90) == 0, second.log()[-3000:]
        assert server.info(run_id)["attempt"] == 2
        result = _sync(first)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "never deliverable (another attempt owns the run" in result.stdout
        moved = sorted((first.home / "data" / "journal" / "superseded").glob("*.jsonl"))
        assert len(moved) == 1 and str(moved[0]) in result.stdout
        assert _journals(first) == []
        assert server.status(run_id) == "Completed"  # the late journal changed nothing
        assert lines(side / "first") == [f"first {run_id}"]
        assert len(lines(side / "second-done")) == 2  # its end never reached the server
        again = _sync(first)
        assert again.returncode == 0 and "Synced 0 journal(s)" in again.stdout
    finally:
        server.kill()
