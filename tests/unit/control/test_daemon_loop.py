"""The daemon loop's control flow with an in-process claim source and job function:
concurrency, --once, --idle-timeout, drain, cancel, reload and auth errors. The real thing
(subprocesses, the stub server, signals) is in tests/integration/daemon/."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import pytest

from runner.api.protocol import ClaimedRun, ClaimResponse, Lease
from runner.control.daemon import Daemon, DaemonSettings
from runner.control.metrics import DaemonMetrics
from runner.control.notify import Notifier
from runner.errors import AuthError, TransientError
from tests.helpers import wait_until


def _claim(n: int) -> ClaimResponse:
    run = ClaimedRun(id=f"run-{n}", repo="r", commit="a" * 40, workflow_path="w.yaml",
                     params={}, labels=[], attempt=1)
    return ClaimResponse(run=run, lease=Lease(token=f"lease-{n}", ttl=30))


class Queue:
    """A claim source: hands out `runs` claims, then long-polls (waits) for nothing."""

    def __init__(self, runs: int, errors: list[Exception] | None = None) -> None:
        self.left = runs
        self.given = 0
        self.errors = list(errors or [])
        self.capacities: list[int] = []
        self.labels: list[list[str]] = []
        self.lock = threading.Lock()
        self.released = threading.Event()

    def claim(self, labels: list[str] | tuple[str, ...] = (), *, capacity: int = 1,
              wait: float = 30.0, tasks: bool = False) -> ClaimResponse | None:
        with self.lock:
            self.capacities.append(capacity)
            self.labels.append(list(labels))
            if self.errors:
                raise self.errors.pop(0)
            if self.left > 0:
                self.left -= 1
                self.given += 1
                return _claim(self.given)
        self.released.wait(min(wait, 0.2))
        return None


class Jobs:
    """A job function whose runs block until released (or canceled)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = threading.Event()
        self.canceled: list[str] = []
        self.lock = threading.Lock()
        self.running = 0
        self.max_running = 0

    def __call__(self, claim: ClaimResponse, cancel: threading.Event) -> str:
        with self.lock:
            self.started.append(claim.run.id)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            while not self.release.wait(0.01):
                if cancel.is_set():
                    self.canceled.append(claim.run.id)
                    return "Canceled"
            return "Completed"
        finally:
            with self.lock:
                self.running -= 1


def _start(daemon: Daemon) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run()), daemon=True)
    thread.start()
    return thread, codes


def test_runs_at_most_concurrency_at_once_and_claims_with_free_slots() -> None:
    queue, jobs = Queue(5), Jobs()
    daemon = Daemon(DaemonSettings(concurrency=2, claim_wait=0.2, labels=("linux",)),
                    client=queue, job=jobs)
    thread, codes = _start(daemon)
    wait_until(lambda: len(jobs.started) == 2, message="two runs started")
    assert jobs.max_running == 2 and queue.given == 2
    jobs.release.set()
    wait_until(lambda: len(jobs.started) == 5, message="all runs started")
    daemon.drain()
    thread.join(10)
    assert codes == [0]
    assert daemon.outcomes == ["Completed"] * 5
    assert max(queue.capacities) == 2 and min(queue.capacities) >= 1
    assert all(labels == ["linux"] for labels in queue.labels)
    assert jobs.max_running == 2


def test_once_runs_one_and_exits() -> None:
    queue, jobs = Queue(3), Jobs()
    jobs.release.set()
    daemon = Daemon(DaemonSettings(concurrency=4, once=True, claim_wait=0.2), client=queue,
                    job=jobs)
    assert daemon.run() == 0
    assert jobs.started == ["run-1"] and queue.given == 1


def test_idle_timeout_exits_zero_without_work() -> None:
    daemon = Daemon(DaemonSettings(idle_timeout=0.3, claim_wait=5), client=Queue(0), job=Jobs())
    assert daemon.run() == 0
    assert daemon.claimed == 0


def test_drain_lets_running_work_finish(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(10)
    queue, jobs = Queue(1), Jobs()
    metrics = DaemonMetrics()
    daemon = Daemon(DaemonSettings(claim_wait=0.2), client=queue, job=jobs, metrics=metrics,
                    notifier=Notifier(str(sock_path)))
    thread, codes = _start(daemon)
    assert listener.recv(4096).startswith(b"READY=1")
    wait_until(lambda: jobs.started, message="run started")
    daemon.drain()
    msg = listener.recv(4096)
    while not msg.startswith(b"STOPPING=1"):
        msg = listener.recv(4096)
    assert not metrics.ready()[0]
    assert thread.is_alive(), "draining waits for the running run"
    jobs.release.set()
    thread.join(10)
    assert codes == [0] and daemon.outcomes == ["Completed"] and not jobs.canceled
    listener.close()


def test_second_drain_cancels_running_work() -> None:
    queue, jobs = Queue(2), Jobs()
    daemon = Daemon(DaemonSettings(concurrency=2, claim_wait=0.2), client=queue, job=jobs)
    thread, codes = _start(daemon)
    wait_until(lambda: len(jobs.started) == 2, message="runs started")
    daemon.drain()
    daemon.drain()
    thread.join(10)
    assert codes == [130]
    assert sorted(jobs.canceled) == ["run-1", "run-2"]


def test_auth_error_exits_6_and_transient_errors_are_retried(
        caplog: pytest.LogCaptureFixture) -> None:
    queue = Queue(1, errors=[TransientError("connection refused")])
    jobs = Jobs()
    jobs.release.set()
    daemon = Daemon(DaemonSettings(once=True, claim_wait=0.2), client=queue, job=jobs)
    assert daemon.run() == 0
    assert daemon.metrics.counter("claim_errors") == 1 and jobs.started == ["run-1"]

    for status, says in ((401, "refused the runner token"),
                         (403, "refused this runner's claim")):
        queue = Queue(1, errors=[AuthError(f"POST /runs/claim: HTTP {status}", status)])
        daemon = Daemon(DaemonSettings(claim_wait=0.2), client=queue, job=Jobs())
        with caplog.at_level(logging.ERROR, logger="ferry.daemon"):
            assert daemon.run() == 6
        assert daemon.claimed == 0
        assert says in caplog.text, (status, caplog.text)
        caplog.clear()


def test_reload_changes_labels_and_concurrency() -> None:
    queue, jobs = Queue(0), Jobs()
    reloaded = threading.Event()

    def reload(old: DaemonSettings) -> DaemonSettings:
        reloaded.set()
        return DaemonSettings(labels=("gpu",), concurrency=3, claim_wait=0.2)

    daemon = Daemon(DaemonSettings(labels=("cpu",), claim_wait=0.2, idle_timeout=60),
                    client=queue, job=jobs, reload_settings=reload)
    thread, codes = _start(daemon)
    wait_until(lambda: queue.labels, message="first claim")
    daemon.reload()
    assert reloaded.wait(5)
    wait_until(lambda: queue.labels[-1] == ["gpu"], message="claims with the new labels")
    assert daemon.settings.concurrency == 3 and daemon.settings.idle_timeout == 60
    daemon.drain()
    thread.join(10)
    assert codes == [0]


class Reclaim(Queue):
    """Hands out run-1 attempt 1, then the same run again as attempt 2 (its lease expired
    while the daemon was cut off, and the claim came back to the same daemon)."""

    def claim(self, labels: list[str] | tuple[str, ...] = (), *, capacity: int = 1,
              wait: float = 30.0, tasks: bool = False) -> ClaimResponse | None:
        with self.lock:
            if self.given < 2 and (self.given == 0 or self.second.is_set()):
                self.given += 1
                claim = _claim(1)
                return claim.model_copy(update={"run": claim.run.model_copy(
                    update={"attempt": self.given})})
        self.released.wait(min(wait, 0.2))
        return None

    def __init__(self) -> None:
        super().__init__(0)
        self.second = threading.Event()


def test_a_run_claimed_again_waits_for_its_earlier_attempt_here_to_end() -> None:
    queue = Reclaim()
    spans: dict[int, list[float]] = {}
    first_canceled = threading.Event()
    lock = threading.Lock()

    def job(claim: ClaimResponse, cancel: threading.Event) -> str:
        attempt = claim.run.attempt
        with lock:
            spans[attempt] = [time.monotonic()]
        if attempt == 1:
            queue.second.set()
            cancel.wait(10)
            first_canceled.set()
            time.sleep(0.3)  # the earlier attempt takes a while to stop its steps
        with lock:
            spans[attempt].append(time.monotonic())
        return "Canceled" if attempt == 1 else "Completed"

    daemon = Daemon(DaemonSettings(concurrency=2, claim_wait=0.2), client=queue, job=job)
    thread, codes = _start(daemon)
    wait_until(lambda: len(daemon.outcomes) == 2, message="both attempts reaped")
    daemon.drain()
    thread.join(10)
    assert codes == [0]
    assert first_canceled.is_set(), "the earlier attempt was not canceled"
    assert spans[2][0] >= spans[1][1], f"attempt 2 started before attempt 1 ended: {spans}"
    assert sorted(daemon.outcomes) == ["Canceled", "Completed"]
