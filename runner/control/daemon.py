"""The runner daemon's main loop: claim runs while there are free slots, hand each to a job
thread, and stop the way an operator expects.

Events, not flags polled in sleeps: signal handlers call `drain()`, `cancel()` or `reload()`,
which only set events; the loop waits on one wakeable event. Claims are long polls made on a
helper thread so the loop keeps beating (health, watchdog) while the server holds the request.

    SIGTERM       drain: claim no more; running runs finish (heartbeats go on); exit 0
    SIGTERM again / SIGINT   cancel: terminate running tasks (grace, kill); exit 130
    SIGHUP        reload: labels, concurrency, log level from the config file

The control plane can ask the same: a claim answered 409 `runner_draining` (the admin drains
this runner) drains like SIGTERM (exit 0); a claim answered 401 (its token was revoked) logs
why and exits 6 once running work is over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from runner.api.protocol import ClaimResponse
from runner.api.retry import RetryPolicy, RetryStopped, retrying
from runner.control.logs import fields
from runner.control.metrics import DaemonMetrics
from runner.control.notify import Notifier
from runner.control.outcome import JobOutcome
from runner.errors import AuthError, Conflict, ControlPlaneError, FerryError
from runner.exitcodes import ExitCode

log = logging.getLogger("ferry.daemon")

_TICK = 1.0  # the loop wakes at least this often (health beat); events wake it sooner


@dataclass(frozen=True)
class DaemonSettings:
    """What the loop needs to know; rebuilt from the config file on SIGHUP."""

    labels: tuple[str, ...] = ()
    concurrency: int = 1
    once: bool = False
    idle_timeout: float | None = None
    claim_wait: float = 10.0
    """Seconds the server may hold one claim; also bounds how long an idle drain takes."""
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(
        max_attempts=None, initial=0.5, backoff_factor=2.0, max_wait=30.0))


class ClaimClient(Protocol):
    """The client method the loop uses."""

    def claim(self, labels: tuple[str, ...] | list[str] = (), *, capacity: int = 1,
              wait: float = 30.0) -> ClaimResponse | None:
        """Long-poll for a run."""
        ...


class JobRunner(Protocol):
    """Executes one claimed run to its end; returns the run's final status (or a reason)."""

    def __call__(self, claim: ClaimResponse, cancel: threading.Event) -> JobOutcome:
        """Run it; never raise for an ordinary failure (return `JobOutcome.ERROR`)."""
        ...


@dataclass
class _Job:
    claim: ClaimResponse
    cancel: threading.Event
    thread: threading.Thread
    outcome: JobOutcome | None = None


class Daemon:
    """Claims and runs work until told to stop; `run()` returns the process exit code."""

    def __init__(self, settings: DaemonSettings, *, client: ClaimClient, job: JobRunner,
                 metrics: DaemonMetrics | None = None, notifier: Notifier | None = None,
                 sync_all: Callable[[], int] | None = None,
                 reload_settings: Callable[[DaemonSettings], DaemonSettings] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._client = client
        self._job = job
        self.metrics = metrics or DaemonMetrics()
        self._notifier = notifier or Notifier(None)
        self._sync_all = sync_all
        self._reload_settings = reload_settings
        self._clock = clock
        self._wake = threading.Event()
        self._draining = threading.Event()
        self._canceling = threading.Event()
        self._reloading = threading.Event()
        self._jobs: dict[str, _Job] = {}
        self._claim_thread: threading.Thread | None = None
        self._claim_result: list[ClaimResponse | BaseException | None] = []
        self._claim_stop = threading.Event()
        self.claimed = 0
        self.outcomes: list[JobOutcome] = []
        self._exit = ExitCode.OK

    # -- called from signal handlers: set events only ---------------------------------------
    def drain(self) -> None:
        """Stop claiming and exit once running work has finished (first SIGTERM)."""
        if self._draining.is_set():
            self.cancel()
            return
        self._draining.set()
        self._claim_stop.set()
        self._wake.set()

    def cancel(self) -> None:
        """Terminate running tasks and exit (second SIGTERM, SIGINT)."""
        self._draining.set()
        self._canceling.set()
        self._claim_stop.set()
        self._wake.set()

    def reload(self) -> None:
        """Re-read the configuration at the next turn of the loop (SIGHUP)."""
        self._reloading.set()
        self._wake.set()

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> ExitCode:
        """Replay journals, announce readiness, loop, drain, replay again; the exit code."""
        self._replay("start")
        self._notifier.ready(self._status_line())
        log.info("daemon ready", extra=fields(labels=",".join(self.settings.labels),
                                              concurrency=self.settings.concurrency))
        idle_since = self._clock()
        stopping_sent = False
        while True:
            self.metrics.beat()
            if self._claim_thread is not None and not self._claim_thread.is_alive():
                self._collect_claim()
            if self._reap() and not self._jobs:
                idle_since = self._clock()
            if self._canceling.is_set():
                self._cancel_all()
            if self._reloading.is_set():
                self._apply_reload()
            if self._draining.is_set() and not stopping_sent:
                stopping_sent = True
                self.metrics.set_draining(True)
                self._notifier.stopping(f"draining {len(self._jobs)} run(s)")
                log.info("draining: no new claims", extra=fields(running=len(self._jobs)))
            if self._done(idle_since):
                break
            self._maybe_claim(idle_since)
            self._wake.wait(_TICK)
            self._wake.clear()
        if not stopping_sent:
            self._notifier.stopping("stopping")
        self._replay("exit")
        log.info("daemon stopped", extra=fields(exit=self._exit, runs=self.claimed))
        return self._exit

    def _done(self, idle_since: float) -> bool:
        if self._jobs:
            return False
        if self._canceling.is_set():
            return True  # a claim in flight is abandoned: its lease expires, it is re-queued
        claim_busy = self._claim_thread is not None
        if self._draining.is_set() or (self.settings.once and self.claimed >= 1):
            return not claim_busy  # a run claimed before the drain is still run
        idle = self.settings.idle_timeout
        if idle is not None and not claim_busy and self._clock() - idle_since >= idle:
            log.info("idle timeout reached", extra=fields(idle_timeout=idle))
            return True
        return False

    def _maybe_claim(self, idle_since: float) -> None:
        if self._draining.is_set() or self._claim_thread is not None:
            return
        if self.settings.once and self.claimed >= 1:
            return
        free = self.settings.concurrency - len(self._jobs)
        self.metrics.set_running(len(self._jobs), self.settings.concurrency)
        if free <= 0:
            return
        wait = self.settings.claim_wait
        if self.settings.idle_timeout is not None and not self._jobs:
            left = self.settings.idle_timeout - (self._clock() - idle_since)
            wait = max(0.0, min(wait, left))
        self._start_claim(free, wait)

    # -- claims ------------------------------------------------------------------------------
    def _start_claim(self, free: int, wait: float) -> None:
        labels = self.settings.labels
        retry = retrying(self.settings.retry, stop_event=self._claim_stop,
                         on_retry=self._on_claim_retry)

        def claim() -> None:
            try:
                result: ClaimResponse | BaseException | None = retry(
                    lambda: self._client.claim(list(labels), capacity=free, wait=wait))
            except BaseException as exc:
                result = exc
            self._claim_result.append(result)
            self._wake.set()

        self._claim_thread = threading.Thread(target=claim, name="ferry-claim", daemon=True)
        self._claim_thread.start()

    def _on_claim_retry(self, exc: BaseException, sleep: float) -> None:
        self.metrics.inc("claim_errors")
        self.metrics.contact_failed()
        log.warning("claim failed, retrying in %.1fs: %s", sleep, exc)

    def _collect_claim(self) -> None:
        self._claim_thread = None
        result = self._claim_result.pop() if self._claim_result else None
        if isinstance(result, RetryStopped):
            return
        if isinstance(result, AuthError):
            log.error("the control plane refused the runner token (%s); re-register with "
                      "'ferry register'", result)
            self._exit = ExitCode.CONTROL
            self.drain()
            return
        if isinstance(result, Conflict) and result.code == "runner_draining":
            self.metrics.contact_ok()
            log.info("the control plane drains this runner: no new claims; finishing %d "
                     "running run(s), then exiting", len(self._jobs))
            self.drain()
            return
        if isinstance(result, ControlPlaneError | FerryError):
            self.metrics.inc("claim_errors")
            log.error("claim failed: %s", result)
            return
        if isinstance(result, BaseException):
            log.error("claim crashed: %r", result)
            return
        self.metrics.contact_ok()
        if result is None:
            return
        if self._canceling.is_set():
            log.warning("run claimed while canceling is left to its lease expiry",
                        extra=fields(run=result.run.id))
            return
        self._launch(result)

    # -- jobs --------------------------------------------------------------------------------
    def _launch(self, claim: ClaimResponse) -> None:
        run = claim.run
        self.claimed += 1
        self.metrics.inc("runs_claimed")
        log.info("run claimed", extra=fields(run=run.id, attempt=run.attempt, repo=run.repo,
                                             workflow=run.workflow_path))
        cancel = threading.Event()
        job = _Job(claim=claim, cancel=cancel, thread=threading.Thread(
            target=self._run_job, args=(run.id,), name=f"ferry-run-{run.id[:8]}", daemon=True))
        self._jobs[run.id] = job
        self.metrics.set_running(len(self._jobs), self.settings.concurrency)
        self._notifier.status(self._status_line())
        job.thread.start()

    def _run_job(self, run_id: str) -> None:
        job = self._jobs[run_id]
        try:
            job.outcome = self._job(job.claim, job.cancel)
        except Exception as exc:  # a bug in one run must not take the daemon down
            log.exception("run crashed: %s", exc, extra=fields(run=run_id))
            job.outcome = JobOutcome.ERROR
        finally:
            self._wake.set()

    def _reap(self) -> bool:
        done = [rid for rid, job in self._jobs.items() if not job.thread.is_alive()]
        for rid in done:
            job = self._jobs.pop(rid)
            outcome = job.outcome or JobOutcome.ERROR
            self.outcomes.append(outcome)
            log.info("run done", extra=fields(run=rid, outcome=outcome))
        if done:
            self.metrics.set_running(len(self._jobs), self.settings.concurrency)
            self._notifier.status(self._status_line())
        return bool(done)

    def _cancel_all(self) -> None:
        for job in self._jobs.values():
            if not job.cancel.is_set():
                log.warning("canceling run", extra=fields(run=job.claim.run.id))
                job.cancel.set()
        self._exit = ExitCode.INTERRUPTED

    # -- reload, replay ----------------------------------------------------------------------
    def _apply_reload(self) -> None:
        self._reloading.clear()
        if self._reload_settings is None:
            return
        self._notifier.reloading()
        try:
            new = self._reload_settings(self.settings)
        except FerryError as exc:
            log.error("reload failed, keeping the current settings: %s", exc)
        else:
            # --once and --idle-timeout are command-line only: keep them.
            self.settings = replace(new, once=self.settings.once,
                                    idle_timeout=self.settings.idle_timeout)
            log.info("configuration reloaded", extra=fields(
                labels=",".join(self.settings.labels), concurrency=self.settings.concurrency))
        self._notifier.ready(self._status_line())

    def _replay(self, when: str) -> None:
        if self._sync_all is None:
            return
        try:
            sent = self._sync_all()
        except FerryError as exc:
            log.warning("journal replay at %s incomplete: %s", when, exc)
            self.metrics.contact_failed()
            return
        if sent:
            log.info("journal replayed", extra=fields(when=when, records=sent))

    def _status_line(self) -> str:
        state = "draining" if self._draining.is_set() else "claiming"
        return (f"{state}; {len(self._jobs)}/{self.settings.concurrency} runs; "
                f"{self.claimed} claimed")
