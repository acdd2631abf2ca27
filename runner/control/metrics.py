"""The daemon's live figures: loop liveness, server contact, run counters and gauges.

One `DaemonMetrics` is shared by the daemon loop (writes), the health server and the systemd
watchdog (read). It renders the Prometheus text exposition format (version 0.0.4).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

COUNTERS = {
    "runs_claimed": "Runs claimed from the control plane.",
    "runs_completed": "Runs that ended Completed.",
    "runs_failed": "Runs that ended Failed.",
    "runs_canceled": "Runs that ended Canceled.",
    "runs_paused": "Runs released while awaiting a manual trigger.",
    "runs_lease_lost": "Runs abandoned because their lease was lost.",
    "runs_errored": "Runs that could not be executed (fetch or load error).",
    "claim_errors": "Claim requests that failed.",
    "heartbeats": "Lease heartbeats answered by the server.",
    "heartbeat_errors": "Lease heartbeats that failed.",
    "records_delivered": "Journal records acknowledged by the control plane.",
    "journals_set_aside": "Journals moved aside because the server refuses them for good.",
}


class DaemonMetrics:
    """Thread-safe counters and gauges of one daemon process."""

    def __init__(self, *, unreachable_after: float = 60.0, loop_max_age: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._started = clock()
        self._last_beat = self._started
        self._last_contact: float | None = None
        self._first_failure: float | None = None
        self._running = 0
        self._capacity = 0
        self._draining = False
        self.unreachable_after = unreachable_after
        self.loop_max_age = loop_max_age
        self.backlog: Callable[[], int] = lambda: 0

    # writers -------------------------------------------------------------------------------
    def inc(self, name: str, by: int = 1) -> None:
        """Add to a counter named in `COUNTERS`."""
        with self._lock:
            self._counters[name] += by

    def beat(self) -> None:
        """The main loop went round once."""
        with self._lock:
            self._last_beat = self._clock()

    def contact_ok(self) -> None:
        """A request to the control plane succeeded."""
        with self._lock:
            self._last_contact = self._clock()
            self._first_failure = None

    def contact_failed(self) -> None:
        """A request to the control plane failed for a transient reason."""
        with self._lock:
            if self._first_failure is None:
                self._first_failure = self._clock()

    def set_running(self, running: int, capacity: int) -> None:
        """Runs executing now and the configured concurrency."""
        with self._lock:
            self._running = running
            self._capacity = capacity

    def set_draining(self, draining: bool = True) -> None:
        """The daemon stopped claiming (SIGTERM)."""
        with self._lock:
            self._draining = draining

    # readers -------------------------------------------------------------------------------
    def counter(self, name: str) -> int:
        """Current value of a counter."""
        with self._lock:
            return self._counters[name]

    def loop_age(self) -> float:
        """Seconds since the main loop last went round."""
        with self._lock:
            return self._clock() - self._last_beat

    def healthy(self) -> bool:
        """The loop ticked within `loop_max_age` seconds."""
        return self.loop_age() <= self.loop_max_age

    def seconds_since_contact(self) -> float | None:
        """Seconds since the last successful request; None before the first one."""
        with self._lock:
            return None if self._last_contact is None else self._clock() - self._last_contact

    def unreachable_for(self) -> float:
        """Seconds the server has been failing without a success in between (0 when fine)."""
        with self._lock:
            return 0.0 if self._first_failure is None else self._clock() - self._first_failure

    def ready(self) -> tuple[bool, str]:
        """Whether the daemon takes work now, and why not."""
        with self._lock:
            draining = self._draining
        if draining:
            return False, "draining"
        if not self.healthy():
            return False, f"main loop stalled for {self.loop_age():.0f}s"
        down = self.unreachable_for()
        if down > self.unreachable_after:
            return False, f"control plane unreachable for {down:.0f}s"
        return True, "ready"

    def render(self) -> str:
        """Prometheus text exposition format."""
        lines: list[str] = []
        with self._lock:
            counters = dict(self._counters)
            running, capacity, draining = self._running, self._capacity, self._draining
        for name, help_text in COUNTERS.items():
            metric = f"ferry_{name}_total"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter",
                      f"{metric} {counters[name]}"]
        try:
            backlog = self.backlog()
        except Exception:  # a broken journal must not take /metrics down with it
            backlog = -1
        since = self.seconds_since_contact()
        gauges = [
            ("runs_running", "Runs executing now.", running),
            ("concurrency", "Runs this daemon executes at once at most.", capacity),
            ("journal_backlog", "Journal records not yet acknowledged by the server.", backlog),
            ("seconds_since_last_contact",
             "Seconds since the last successful request to the control plane (-1: never).",
             -1 if since is None else round(since, 3)),
            ("loop_age_seconds", "Seconds since the main loop last went round.",
             round(self.loop_age(), 3)),
            ("draining", "1 while draining after SIGTERM.", int(draining)),
            ("ready", "1 when /readyz answers 200.", int(self.ready()[0])),
            ("uptime_seconds", "Seconds since the daemon started.",
             round(self._clock() - self._started, 3)),
        ]
        for name, help_text, value in gauges:
            metric = f"ferry_{name}"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge", f"{metric} {value}"]
        return "\n".join(lines) + "\n"
