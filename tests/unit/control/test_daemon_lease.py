"""LeaseKeeper: renewals, cancel relay, lost leases and offline tolerance (thread logic only;
the integration tests run it against the real stub server)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from runner.api.client import ControlClient
from runner.api.protocol import HeartbeatResponse
from runner.control.contact import Contact
from runner.control.lease import LeaseKeeper
from runner.control.metrics import DaemonMetrics
from runner.errors import AuthError, LeaseLost, TransientError
from tests.helpers import wait_until


class ScriptedServer:
    """Answers heartbeats from a script: a HeartbeatResponse or an exception per call."""

    def __init__(self, *answers: HeartbeatResponse | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, str]] = []

    def heartbeat(self, run_id: str, lease: str) -> HeartbeatResponse:
        self.calls.append((run_id, lease))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


OK = HeartbeatResponse(ttl=30, cancel_requested=False)


def test_renews_with_the_lease_token_until_stopped() -> None:
    server = ScriptedServer(OK)
    cancel = threading.Event()
    keeper = LeaseKeeper(server, "run-1", "lease-tok", 30, cancel=cancel, interval=0.02)
    keeper.start()
    wait_until(lambda: len(server.calls) >= 3, message="three heartbeats")
    keeper.stop()
    count = len(server.calls)
    assert set(server.calls) == {("run-1", "lease-tok")}
    assert not cancel.is_set() and not keeper.lost.is_set()
    assert len(server.calls) == count  # really stopped


def test_cancel_requested_sets_the_cancel_event() -> None:
    server = ScriptedServer(OK, HeartbeatResponse(ttl=30, cancel_requested=True))
    cancel = threading.Event()
    keeper = LeaseKeeper(server, "run-1", "t", 30, cancel=cancel, interval=0.02)
    keeper.start()
    assert cancel.wait(5)
    assert keeper.cancel_requested.is_set() and not keeper.lost.is_set()
    keeper.stop()


def test_lost_lease_stops_the_work_and_the_keeper() -> None:
    for error in (LeaseLost("409 lease_lost"), AuthError("403", 403)):
        server = ScriptedServer(OK, error)
        cancel = threading.Event()
        metrics = DaemonMetrics()
        keeper = LeaseKeeper(server, "run-1", "t", 30, cancel=cancel, interval=0.02,
                             metrics=metrics)
        keeper.start()
        assert keeper.lost.wait(5)
        assert cancel.is_set()
        calls = len(server.calls)
        keeper.stop()
        assert len(server.calls) == calls == 2  # no heartbeat after the loss


def test_transient_errors_keep_the_run_going() -> None:
    server = ScriptedServer(TransientError("connection refused"), TransientError("reset"), OK)
    metrics = DaemonMetrics()
    cancel = threading.Event()
    keeper = LeaseKeeper(server, "run-1", "t", 30, cancel=cancel, interval=0.02, metrics=metrics)
    keeper.start()
    wait_until(lambda: metrics.counter("heartbeats") >= 2, message="recovered heartbeats")
    keeper.stop()
    assert metrics.counter("heartbeat_errors") == 2
    assert not cancel.is_set() and not keeper.lost.is_set()
    assert metrics.unreachable_for() == 0.0  # a success clears the outage


def test_interval_is_a_third_of_the_ttl_and_backs_off_while_failing() -> None:
    keeper = LeaseKeeper(ScriptedServer(OK), "r", "t", 30, cancel=threading.Event())
    assert all(8.5 <= keeper.interval() <= 10 for _ in range(50))
    # failing for less than a TTL: sooner (the lease can still be renewed in time)
    assert all(4.25 <= keeper.interval(3, failing_for=20) <= 5 for _ in range(50))
    assert all(8.5 <= keeper.interval(5, failing_for=31) <= 10 for _ in range(50))  # ttl/3 cap
    fast = LeaseKeeper(ScriptedServer(OK), "r", "t", 30, cancel=threading.Event(), interval=1)
    assert max(fast.interval(2, failing_for=29) for _ in range(50)) == pytest.approx(0.5, 0.02)
    assert [max(fast.interval(n, failing_for=31) for _ in range(50)) for n in range(1, 6)] == \
        pytest.approx([2, 4, 8, 10, 10], rel=0.02)


def test_an_unreachable_server_is_one_warning_not_a_flood(
        caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on: real refused connections
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client = ControlClient(url, "tok", timeout=2)
    metrics = DaemonMetrics()
    contact = Contact(url, metrics, lost_after=0.3)
    keeper = LeaseKeeper(client, "run-1", "t", 0.3, cancel=threading.Event(), interval=0.02,
                         metrics=metrics, contact=contact)
    caplog.set_level(logging.DEBUG, logger="ferry")
    keeper.start()
    try:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            contact.tick(lambda: 0)
            time.sleep(0.05)
    finally:
        keeper.stop()
    beats = metrics.counter("heartbeat_errors")
    # fast retries for a TTL (0.3 s), then backing off: 0.08, 0.1 (ttl/3) ... about 30 tries in
    # 2.5 s where a heartbeat every 0.02 s would make 125 (and 125 warnings)
    assert 3 <= beats <= 45, beats
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1, loud
    assert loud[0].startswith(f"lost contact with the control plane at {url}: ")
    assert f"cannot connect to the control plane at {url}" in loud[0]
