"""The daemon's delivery of journals no live run owns: at start, in the background while it runs
(journals left by an earlier process while the server was down), and once more at exit.

Each pass is `runner.state.replay.sync_all` (the CLI binds it to the data dir and the client);
journals a running job owns are skipped by their lock. Results are logged per journal: what was
delivered and what is left (and why), a journal set aside (where, and why: one line each), and
damaged lines (loudly). While the control plane is unreachable the background passes back off
and stay quiet: the `Contact` says it once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from runner.control.logs import fields
from runner.errors import FerryError
from runner.state.replay import SyncReport, SyncResult

log = logging.getLogger("ferry.daemon")

SyncPass = Callable[[threading.Event, float | None], SyncReport]
"""One pass over the journals: (stop event, time budget in seconds or None) -> report."""

INTERVAL = 15.0
MAX_INTERVAL = 120.0


class Replayer:
    """Runs `SyncPass`es in the foreground (`replay`) or on a background thread (`start`)."""

    def __init__(self, sync: SyncPass, *, interval: float = INTERVAL) -> None:
        self._sync = sync
        self.interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one pass at a time
        self._said: dict[str, str] = {}  # the last error logged per run (said once, not per pass)
        self._passing = threading.Event()

    def replay(self, when: str, budget: float | None = None,
               stop: threading.Event | None = None) -> SyncReport | None:
        """One pass now (at most `budget` seconds of retrying, until `stop` is set); logs what
        it did."""
        with self._lock:
            self._passing.set()
            try:
                report = self._sync(stop or threading.Event(), budget)
            except FerryError as exc:  # a 401: nothing goes through with this token
                log.error("journal replay at %s failed: %s", when, exc)
                return None
            finally:
                self._passing.clear()
        if when == "background":
            fresh = [r for r in report.results if r.error is None
                     or self._said.get(r.run_id) != r.error]
            for result in report.results:
                if result.error is not None:
                    self._said[result.run_id] = result.error
                else:
                    self._said.pop(result.run_id, None)
            report = SyncReport(results=fresh, unreachable=report.unreachable)
        log_report(report, when, quiet_when_unreachable=when == "background")
        return report

    def start(self) -> None:
        """Replay in the background until `stop()`; `kick()` makes the next pass come now."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ferry-replay", daemon=True)
            self._thread.start()

    def kick(self) -> None:
        """Replay soon (contact with the control plane is back)."""
        self._wake.set()

    @property
    def busy(self) -> bool:
        """A pass runs or is due: the daemon delivers what it owes before it claims (a run of
        its own journal would otherwise be claimed again, and that journal superseded)."""
        return self._passing.is_set() or self._wake.is_set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background passes (a pass in a request gives up at its next retry)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        wait = self.interval
        while not self._stop.is_set():
            self._wake.wait(wait)
            if self._stop.is_set():
                return
            self._passing.set()
            self._wake.clear()
            report = self.replay("background", budget=self.interval, stop=self._stop)
            failing = report is None or report.unreachable
            wait = min(MAX_INTERVAL, wait * 2) if failing else self.interval


def log_report(report: SyncReport, when: str, *, quiet_when_unreachable: bool = False) -> None:
    """One line per journal that something happened to (and the damage, loudly)."""
    for result in report.results:
        _log_result(result, when, quiet_when_unreachable)


def _log_result(result: SyncResult, when: str, quiet: bool) -> None:
    run = result.run_id
    for damage in result.damage:
        log.error("damaged journal line: %s", damage, extra=fields(run=run, when=when))
    if result.torn:
        log.warning("journal had a torn last append (a crash while writing it; never sent): "
                    "%d byte(s) removed", result.torn, extra=fields(run=run, when=when))
    if result.skipped:
        log.debug("journal skipped: %s", result.skipped, extra=fields(run=run, when=when))
    elif result.aside is not None:
        log.error("journal can never be delivered: %s", result.describe(),
                  extra=fields(run=run, when=when, moved_to=str(result.aside),
                               run_ended=result.run_ended))
    elif result.error is not None:
        if result.unreachable and quiet:
            log.debug("journal kept: %s", result.describe(), extra=fields(run=run, when=when))
        else:
            log.warning("journal kept: %s", result.describe(),
                        extra=fields(run=run, when=when, delivered=result.delivered,
                                     left=result.remaining))
    elif result.delivered or when != "background":
        log.info("journal delivered: %s", result.describe(),
                 extra=fields(run=run, when=when, delivered=result.delivered, left=0))
