"""The daemon's own retention (`runner.retention` in the runner config): `ferry prune` with the
configured policy, at start and then every `interval`, on its own thread.

The runs the daemon executes hold their run lock (`RunJob`), so a pass never touches them; what
each pass removed, kept or failed to remove is logged (an error is a warning line naming the
file; the next pass tries again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from runner.control.logs import fields
from runner.paths import Paths
from runner.state.retention import PruneReport, RetentionPolicy, local_runs, prune

log = logging.getLogger("ferry.daemon")


class RetentionTicker:
    """Applies a `RetentionPolicy` to the daemon's FERRY_HOME every `interval` seconds."""

    def __init__(self, paths: Paths, policy: RetentionPolicy, interval: float, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._paths = paths
        self._policy = policy
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ferry-retention", daemon=True)
        self.passes = 0

    def start(self) -> None:
        """Start the passes on a daemon thread (the first one at once)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current pass and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def run_once(self) -> PruneReport:
        """One pass: prune and log what happened."""
        report = prune(self._paths, self._policy, now=self._clock(),
                       known=local_runs(self._paths))
        for run in report.removed:
            log.info("pruned run files", extra=fields(run=run.run_id, bytes=run.bytes,
                                                      paths=len(run.paths)))
        for error in report.errors:
            log.warning("retention could not remove a file", extra=fields(reason=error))
        level = logging.INFO if report.removed or report.errors else logging.DEBUG
        log.log(level, "retention pass", extra=fields(
            removed=len(report.removed), bytes=report.bytes, errors=len(report.errors),
            kept=",".join(f"{reason}={len(ids)}" for reason, ids in report.kept.items())))
        self.passes += 1
        return report

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # a bad pass must not stop the daemon; the next retries
                log.error("retention pass failed: %s", exc)
            self._stop.wait(self._interval)
