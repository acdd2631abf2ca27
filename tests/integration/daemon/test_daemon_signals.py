"""Signals, systemd notifications, server-side cancel and manual triggers, over real
processes: SIGTERM drains, READY/STOPPING reach a real notify socket, a cancel stops the tasks,
a triggered run is resumed without re-running completed tasks."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any

from tests.helpers import wait_until
from tests.integration.daemon.conftest import Server
from tests.integration.daemon.flows import APPROVAL, lines, two_tasks


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_sigterm_drains_the_run_then_exits_zero_with_notifications(
        shared_server: Server, make_daemon: Any, tmp_path: Path) -> None:
    side = tmp_path / "side"
    side.mkdir()
    shared_server.repo("sigterm", {"wf.yaml": two_tasks()})
    run_id = shared_server.submit("sigterm", "wf.yaml", params={"dir": str(side)},
                                  labels=["sigterm"])
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(60)
    try:
        daemon = make_daemon(shared_server, "sigterm")
        daemon.register(labels="sigterm")
        daemon.start(env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "2000000"})
        messages: list[bytes] = []

        def seen(prefix: bytes) -> bool:
            while not any(m.startswith(prefix) for m in messages):
                messages.append(sock.recv(4096))
            return True

        assert seen(b"READY=1")
        wait_until(lambda: lines(side / "second-start"), timeout=60, message="run started")
        assert seen(b"WATCHDOG=1")
        daemon.signal(signal.SIGTERM)
        assert seen(b"STOPPING=1")
        assert daemon.proc.poll() is None, "draining: the run is still going"
        (side / "gate").touch()
        assert daemon.wait(60) == 0, daemon.log()[-3000:]
        assert shared_server.status(run_id) == "Completed"
        assert len(lines(side / "second-done")) == 1
        assert daemon.logged("draining: no new claims")
    finally:
        sock.close()


def test_cancel_requested_on_the_server_stops_the_tasks(
        shared_server: Server, make_daemon: Any, tmp_path: Path) -> None:
    side = tmp_path / "side"
    side.mkdir()
    shared_server.repo("cancel", {"wf.yaml": two_tasks()})
    run_id = shared_server.submit("cancel", "wf.yaml", params={"dir": str(side)},
                                  labels=["cancel"])
    daemon = make_daemon(shared_server, "cancel")
    daemon.register(labels="cancel")
    daemon.start("--once")
    wait_until(lambda: (side / "second.pid").exists() and lines(side / "second-start"),
               timeout=60, message="second task running")
    pid = int((side / "second.pid").read_text())
    assert _alive(pid)
    shared_server.cancel(run_id)
    # heartbeats every second relay the cancel; the step gets SIGTERM (grace, then SIGKILL)
    wait_until(lambda: not _alive(pid), timeout=5, message="the step to be terminated")
    assert daemon.wait(60) == 4, daemon.log()[-3000:]  # --once: the run was Canceled
    assert shared_server.status(run_id) == "Canceled"
    assert not lines(side / "second-done")


def test_triggered_run_is_resumed_without_rerunning_completed_tasks(
        shared_server: Server, make_daemon: Any, tmp_path: Path) -> None:
    side = tmp_path / "side"
    side.mkdir()
    shared_server.repo("approval", {"wf.yaml": APPROVAL})
    run_id = shared_server.submit("approval", "wf.yaml", params={"dir": str(side)},
                                  labels=["approval"])
    daemon = make_daemon(shared_server, "approval")
    daemon.register(labels="approval")
    daemon.start("--idle-timeout", "60s")
    wait_until(lambda: shared_server.queues()[run_id] == "paused", timeout=60,
               message="run released, awaiting a trigger")
    assert shared_server.status(run_id) == "AwaitingTrigger"
    assert lines(side / "build") == ["build"] and not lines(side / "approve")
    shared_server.trigger_all(run_id)
    wait_until(lambda: shared_server.queues()[run_id] == "done", timeout=60,
               message="resumed run finished")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(60) == 0
    assert shared_server.status(run_id) == "Completed"
    assert lines(side / "build") == ["build"], "a completed task ran again"
    assert lines(side / "approve") == ["approve"] and lines(side / "deploy") == ["deploy"]
    assert len(daemon.logged("run claimed")) == 2
