"""Keeps one claimed run's lease alive on its own thread, and relays what the server says.

Every heartbeat renews the lease; `cancel_requested` in the answer sets the run's cancel event
(the executor terminates the tasks). A refused lease (409 lease_lost, 403, 404) means another
attempt owns the run now: `lost` is set together with the cancel event, and the run's journal
is kept. Transient failures are retried sooner (half the interval) while the lease can still be
saved, then back off (doubling up to a third of the TTL, at most 30 s), and are reported to the
daemon's `Contact`, which says once that contact is lost: the run goes on offline and the
server's grace period lets its journal be delivered later.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Protocol

from runner.api.protocol import HeartbeatResponse
from runner.control.contact import Contact
from runner.control.logs import fields
from runner.control.metrics import DaemonMetrics
from runner.errors import ControlPlaneError, LeaseLost, PermanentError, TransientError

log = logging.getLogger("ferry.daemon")

MAX_BACKOFF = 30.0


class HeartbeatClient(Protocol):
    """The one client method the keeper needs."""

    def heartbeat(self, run_id: str, lease: str) -> HeartbeatResponse:
        """Renew a lease."""
        ...


class LeaseKeeper:
    """Heartbeats one run every `ttl/3` seconds (jittered) until stopped or the lease is lost."""

    def __init__(self, client: HeartbeatClient, run_id: str, lease: str, ttl: float, *,
                 cancel: threading.Event, metrics: DaemonMetrics | None = None,
                 interval: float | None = None, contact: Contact | None = None) -> None:
        self.run_id = run_id
        self._client = client
        self._lease = lease
        self._ttl = ttl
        self._fixed_interval = interval
        self.cancel = cancel
        self.lost = threading.Event()
        self.cancel_requested = threading.Event()
        self._metrics = metrics
        self._contact = contact
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ferry-lease-{run_id[:8]}",
                                        daemon=True)

    def start(self) -> None:
        """Start heartbeating."""
        self._thread.start()

    def stop(self) -> None:
        """Stop heartbeating (the run is finished or abandoned) and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def interval(self, failures: int = 0, failing_for: float = 0.0) -> float:
        """Seconds to the next heartbeat: the configured interval (else a third of the TTL).
        While failing, half of it as long as the lease could still be renewed in time (within
        a TTL of the first failure: a flaky network must not cost the lease); after that the
        server is away: doubling per failure up to a third of the TTL (at most 30 s). Jittered."""
        base = self._fixed_interval if self._fixed_interval is not None else self._ttl / 3
        if failures and failing_for < self._ttl:
            base = base / 2
        elif failures:
            cap = max(base, min(self._ttl / 3, MAX_BACKOFF))
            base = min(cap, base * 2.0 ** min(failures, 16))
        return max(0.05, base * random.uniform(0.85, 1.0))

    def beat(self) -> str:
        """One heartbeat: "ok", "failed" (transient, try again sooner) or "lost" (stop)."""
        try:
            answer = self._client.heartbeat(self.run_id, self._lease)
        except TransientError as exc:
            self._count("heartbeat_errors", ok=False, error=exc)
            return "failed"
        except (LeaseLost, PermanentError) as exc:
            # 409 lease_lost, 403 (not this runner's run any more), 404 (run gone)
            self._count("heartbeat_errors", ok=True)
            self._lose(str(exc))
            return "lost"
        except ControlPlaneError as exc:
            self._count("heartbeat_errors", ok=False, error=exc)
            log.warning("heartbeat refused: %s", exc, extra=fields(run=self.run_id))
            return "failed"
        self._count("heartbeats", ok=True)
        if answer.ttl > 0:
            self._ttl = answer.ttl
        if answer.cancel_requested and not self.cancel_requested.is_set():
            log.info("cancel requested by the server", extra=fields(run=self.run_id))
            self.cancel_requested.set()
            self.cancel.set()
        return "ok"

    def _lose(self, why: str) -> None:
        log.warning("lease lost, stopping the run's work (journal kept): %s", why,
                    extra=fields(run=self.run_id))
        self.lost.set()
        self.cancel.set()

    def _count(self, name: str, *, ok: bool, error: BaseException | None = None) -> None:
        if self._metrics is not None:
            self._metrics.inc(name)
        if self._contact is not None:
            if ok:
                self._contact.ok()
            else:
                self._contact.failed(error or name)
        elif self._metrics is not None:
            if ok:
                self._metrics.contact_ok()
            else:
                self._metrics.contact_failed()
        if error is not None:
            log.debug("heartbeat failed, run goes on offline: %s", error,
                      extra=fields(run=self.run_id))

    def _run(self) -> None:
        failures, since = 0, 0.0
        while not self._stop.wait(self.interval(failures, time.monotonic() - since)):
            outcome = self.beat()
            if outcome == "lost":
                return
            if outcome != "failed":
                failures = 0
                continue
            if not failures:
                since = time.monotonic()
            failures += 1
