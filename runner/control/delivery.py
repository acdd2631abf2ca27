"""How a claimed run's end reaches the control plane: the finish record, delivery (bounded once
the daemon drains or runs `--once`), the journals that can never be delivered, and the failures
reported directly when the journal itself cannot be written (a full disk).

    deliver(...)        finish record journaled, then delivery until the server has everything;
                        unbounded while the daemon runs normally (the lease is kept alive and the
                        server gives it back when it returns), at most `drain_timeout` seconds
                        once bounded, at once given up on a second signal: the records stay in the
                        journal for the next start or `ferry sync`
    report_directly(...)  the journal cannot be written: flush what it holds (briefly), then tell
                        the server the run failed and why, without the journal
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from runner.api.client import ControlClient
from runner.api.retry import RetryPolicy
from runner.control.logs import fields
from runner.control.metrics import DaemonMetrics
from runner.control.outcome import JobOutcome
from runner.errors import FerryError, LeaseLost, StateError, TransientError
from runner.state.api import ApiBackend
from runner.state.replay import SyncResult, report_failed, settle
from runner.state.sync import JournalDamaged, RecordRefused

log = logging.getLogger("ferry.daemon")

_COUNTERS = {JobOutcome.COMPLETED: "runs_completed", JobOutcome.FAILED: "runs_failed",
             JobOutcome.CANCELED: "runs_canceled", JobOutcome.AWAITING_TRIGGER: "runs_paused"}


@dataclass
class Delivery:
    """The delivery side of one claimed run."""

    client: ControlClient
    backend: ApiBackend
    metrics: DaemonMetrics
    run_id: str
    lease: str
    writer: str
    drain_timeout: float
    bounded: threading.Event
    """Set when the daemon drains or runs --once: delivery gets `drain_timeout` seconds."""
    stop: threading.Event
    """Set on a second signal: give up delivering at once."""
    lost: threading.Event
    """Set when the lease keeper learns the lease is lost."""
    retry: RetryPolicy
    flush_step: float = 5.0
    task: str | None = None
    """A distributed run's task this job runs (its lease is the task's)."""

    def deliver(self, status: str) -> JobOutcome:
        """Journal the run's end and deliver everything; the job's outcome."""
        outcome = JobOutcome.of_status(status)
        if outcome is None:
            log.error("executor ended with status %s", status, extra=fields(run=self.run_id))
            self.metrics.inc("runs_errored")
            return JobOutcome.ERROR
        try:
            self.backend.finish(self.run_id, status)
        except StateError as exc:  # the finish record cannot be journaled (a full disk)
            return self._finish_directly(status, outcome, exc)
        deadline: float | None = None
        while True:
            if self.stop.is_set():
                return self._leave("stopped at once")
            if deadline is None and self.bounded.is_set():
                deadline = time.monotonic() + self.drain_timeout
            step = self.flush_step
            if deadline is not None:
                step = max(0.0, min(step, deadline - time.monotonic()))
            try:
                if self.backend.flush(self.run_id, timeout=step):
                    break
            except (LeaseLost, JournalDamaged, RecordRefused) as exc:
                return self.settle(exc)
            except FerryError as exc:
                log.error("delivery failed, journal kept: %s", exc, extra=fields(run=self.run_id))
                self.metrics.inc("runs_errored")
                return JobOutcome.ERROR
            if self.lost.is_set():
                self.metrics.inc("runs_lease_lost")
                return JobOutcome.LEASE_LOST
            if deadline is not None and time.monotonic() >= deadline:
                return self._leave(f"not delivered within the drain timeout "
                                   f"({self.drain_timeout:g}s)")
            log.debug("waiting for the control plane to take the journal",
                      extra=fields(run=self.run_id, backlog=self.backend.backlog(self.run_id)))
        self.metrics.inc(_COUNTERS[outcome])
        return outcome

    def settle(self, exc: FerryError) -> JobOutcome:
        """The server will never take this journal: set it aside (ending the run Failed when
        the run is still ours), one line saying where and why."""
        journal = self.backend.syncer(self.run_id).journal
        result = SyncResult(self.run_id, remaining=journal.backlog())
        try:
            settle(journal, self.client, exc, result, policy=self.retry, stop_event=self.stop)
        except FerryError as again:
            log.error("delivery failed, journal kept: %s (%s)", exc, again,
                      extra=fields(run=self.run_id))
            self.metrics.inc("runs_errored")
            return JobOutcome.ERROR
        self.metrics.inc("journals_set_aside")
        log.error("journal can never be delivered: %s", result.describe(),
                  extra=fields(run=self.run_id, moved_to=str(result.aside),
                               run_ended=result.run_ended))
        if isinstance(exc, LeaseLost):
            self.metrics.inc("runs_lease_lost")
            return JobOutcome.LEASE_LOST
        if result.run_ended:
            self.metrics.inc("runs_failed")
            return JobOutcome.FAILED
        self.metrics.inc("runs_errored")
        return JobOutcome.ERROR

    def report_directly(self, reason: str, *, flush: float = 5.0) -> JobOutcome:
        """The run cannot go on through the journal: deliver what it holds (at most `flush`
        seconds), then tell the server directly that the run failed and why."""
        log.error("run failed: %s; reporting it to the control plane directly", reason,
                  extra=fields(run=self.run_id))
        self._flush_briefly(flush)
        try:
            why = report_failed(self.client, self.run_id, self.lease, self.writer, reason,
                                policy=self.retry, stop_event=self.stop, task=self.task)
        except TransientError as exc:
            why = str(exc)
        if why is None:
            self.metrics.inc("runs_failed")
            return JobOutcome.FAILED
        log.error("the run could not be reported failed (%s): it goes back to the queue when "
                  "its lease expires", why, extra=fields(run=self.run_id))
        self.metrics.inc("runs_errored")
        return JobOutcome.ERROR

    def _finish_directly(self, status: str, outcome: JobOutcome, exc: StateError) -> JobOutcome:
        """Every change is journaled but the finish record is not: deliver the journal, then
        send the finish without it."""
        log.error("cannot journal the end of the run (%s): delivering it directly", exc,
                  extra=fields(run=self.run_id))
        if self._flush_briefly(self.drain_timeout):
            try:
                self.client.finish(self.run_id, self.lease, status)
            except FerryError as again:
                log.error("the run's end could not be delivered (%s): it goes back to the queue "
                          "when its lease expires", again, extra=fields(run=self.run_id))
                self.metrics.inc("runs_errored")
                return JobOutcome.ERROR
            self.metrics.inc(_COUNTERS[outcome])
            return outcome
        return self.report_directly(str(exc), flush=0)

    def _flush_briefly(self, seconds: float) -> bool:
        if seconds <= 0:
            return False
        try:
            return self.backend.flush(self.run_id, timeout=seconds)
        except (FerryError, KeyError):
            return False

    def _leave(self, why: str) -> JobOutcome:
        waiting = self.backend.backlog(self.run_id)
        path = self.backend.syncer(self.run_id).journal.path
        log.warning("%d record(s) of the run wait in the journal %s (%s): the next 'ferry daemon' "
                    "start or 'ferry sync' delivers them", waiting, path, why,
                    extra=fields(run=self.run_id, waiting=waiting))
        return JobOutcome.UNDELIVERED
