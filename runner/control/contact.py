"""Whether the control plane answers, said once: one warning when contact is lost, one line when
it is back (with what was delivered meanwhile), instead of a line per failed request.

Everything that talks to the server reports here (`ok()` after an answer, `failed(exc)` after a
transient failure); single failures are normal on a flaky network (retries absorb them), so
contact counts as lost only when nothing has answered for `lost_after` seconds. The daemon loop
calls `tick()` every turn: it declares the loss, and once contact is back it waits until the
records kept meanwhile are delivered (or `report_after` seconds pass) to say what got through.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from runner.control.logs import fields
from runner.control.metrics import DaemonMetrics

log = logging.getLogger("ferry.daemon")

LOST_AFTER = 5.0
REPORT_AFTER = 30.0


class Contact:
    """The daemon's view of the control plane's reachability, logged on transitions only."""

    def __init__(self, url: str, metrics: DaemonMetrics | None = None, *,
                 lost_after: float = LOST_AFTER, report_after: float = REPORT_AFTER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.metrics = metrics or DaemonMetrics()
        self.lost_after = lost_after
        self.report_after = report_after
        self._clock = clock
        self._lock = threading.Lock()
        self._first_failure: float | None = None
        self._last_error = ""
        self._down_since: float | None = None   # contact declared lost at
        self._back_at: float | None = None      # contact came back at (line not written yet)
        self._offline_for = 0.0
        self._delivered = 0                     # records acknowledged since contact came back
        self.losses = 0

    @property
    def down(self) -> bool:
        """True while contact counts as lost."""
        with self._lock:
            return self._down_since is not None

    def ok(self) -> None:
        """The server answered."""
        self.metrics.contact_ok()
        with self._lock:
            self._first_failure = None
            if self._down_since is not None:
                self._offline_for = self._clock() - self._down_since
                self._down_since = None
                self._back_at = self._clock()
                self._delivered = 0

    def failed(self, exc: BaseException | str) -> None:
        """A request failed for a transient reason (refused, timed out, 5xx)."""
        self.metrics.contact_failed()
        with self._lock:
            self._last_error = str(exc)
            if self._first_failure is None:
                self._first_failure = self._clock()
        log.debug("control plane request failed: %s", exc)

    def delivered(self, records: int) -> None:
        """Journal records were acknowledged (counted for the line that says contact is back)."""
        if records > 0:
            self.metrics.inc("records_delivered", records)
            with self._lock:
                self._delivered += records

    def tick(self, backlog: Callable[[], int]) -> None:
        """Declare a loss after `lost_after` seconds without an answer; say contact is back
        once the backlog is delivered (or after `report_after` seconds)."""
        now = self._clock()
        with self._lock:
            losing = (self._down_since is None and self._first_failure is not None
                      and now - self._first_failure >= self.lost_after)
            back_at = self._back_at
        if back_at is not None:
            waiting = _safe(backlog)
            if losing or waiting == 0 or now - back_at >= self.report_after:
                with self._lock:
                    line = ((self._offline_for, self._delivered) if self._back_at is not None
                            else None)
                    self._back_at = None
                if line is not None:
                    self._say_back(line[0], line[1], waiting)
        if not losing:
            return
        with self._lock:
            if self._down_since is not None or self._first_failure is None:
                return
            self._down_since = self._first_failure
            self.losses += 1
            error, failing_for = self._last_error, now - self._first_failure
        log.warning("lost contact with the control plane at %s: %s; runs go on offline, their "
                    "records wait in the journal", self.url, error,
                    extra=fields(server=self.url, failing_for=round(failing_for, 1)))

    def _say_back(self, offline: float, delivered: int, waiting: int) -> None:
        still = f", {waiting} still waiting" if waiting > 0 else ""
        log.info("contact with the control plane at %s is back after %.0fs: %d record(s) kept "
                 "meanwhile delivered%s", self.url, offline, delivered, still,
                 extra=fields(server=self.url, offline_seconds=round(offline, 1),
                              delivered=delivered, waiting=max(waiting, 0)))


def _safe(backlog: Callable[[], int]) -> int:
    try:
        return backlog()
    except Exception:  # a damaged journal is reported where it is read; here it counts as -1
        return -1
