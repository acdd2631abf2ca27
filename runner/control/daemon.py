"""The runner daemon's main loop: claim runs while there are free slots, hand each to a job
thread, and stop the way an operator expects.

Events, not flags polled in sleeps: signal handlers call `drain()`, `cancel()` or `reload()`,
which only set events; the loop waits on one wakeable event. Claims are long polls made on a
helper thread so the loop keeps beating (health, watchdog) while the server holds the request.

    SIGTERM       drain: claim no more; running runs finish (heartbeats go on), then their
                  records get `drain_timeout` seconds to reach the server; exit 0, saying how
                  many records wait in the journal and what will deliver them
    SIGTERM again / SIGINT   stop at once: terminate running tasks (grace, kill), deliver
                  nothing more (the journal keeps it); exit 130
    SIGHUP        reload: labels, concurrency, log level from the config file

The control plane can ask the same: a claim answered 409 `runner_draining` (the admin drains
this runner) drains like SIGTERM (exit 0); a claim answered 401 (its token was revoked) logs
why and exits 6 once running work is over.

Journals no live run owns are replayed at start (before the first claim), in the background
(`Replayer`), and at exit within what is left of the drain timeout. `--once` bounds delivery the
same way once its run is claimed, and exits with the run's code, or 7 when records are left.
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
from runner.control.contact import Contact
from runner.control.logs import fields
from runner.control.metrics import DaemonMetrics
from runner.control.notify import Notifier
from runner.control.outcome import JobOutcome
from runner.control.replayer import Replayer
from runner.errors import AuthError, Conflict, ControlPlaneError, FerryError
from runner.exitcodes import ExitCode

log = logging.getLogger("ferry.daemon")

_TICK = 1.0  # the loop wakes at least this often (health beat); events wake it sooner
START_REPLAY_BUDGET = 20.0  # seconds the start-up replay may retry before the first claim


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
    drain_timeout: float = 60.0
    """Seconds records of finished runs get to reach the server once the daemon stops."""


class ClaimClient(Protocol):
    """The client method the loop uses."""

    def claim(self, labels: tuple[str, ...] | list[str] = (), *, capacity: int = 1,
              wait: float = 30.0, tasks: bool = False) -> ClaimResponse | None:
        """Long-poll for a run (or, with `tasks`, a task of a distributed run)."""
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
                 replayer: Replayer | None = None, contact: Contact | None = None,
                 backlog: Callable[[], tuple[int, int]] | None = None,
                 journal_dir: str = "the journal",
                 bounded: threading.Event | None = None,
                 stop_delivery: threading.Event | None = None,
                 reload_settings: Callable[[DaemonSettings], DaemonSettings] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._client = client
        self._job = job
        self.metrics = metrics or DaemonMetrics()
        self._notifier = notifier or Notifier(None)
        self._replayer = replayer
        self._contact = contact or Contact("the control plane", self.metrics)
        self._backlog = backlog or (lambda: (0, 0))
        self._journal_dir = journal_dir
        self.bounded = bounded or threading.Event()
        """Set once delivery is bounded by the drain timeout (drain, or --once claimed)."""
        self.stop_delivery = stop_delivery or threading.Event()
        """Set to give up delivering at once (second SIGTERM, SIGINT)."""
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
        self._bounded_since: float | None = None

    # -- called from signal handlers: set events only ---------------------------------------
    def drain(self) -> None:
        """Stop claiming and exit once running work has finished (first SIGTERM)."""
        if self._draining.is_set():
            self.cancel()
            return
        self._draining.set()
        self.bounded.set()
        self._claim_stop.set()
        self._wake.set()

    def cancel(self) -> None:
        """Terminate running tasks, deliver nothing more, exit (second SIGTERM, SIGINT)."""
        self._draining.set()
        self._canceling.set()
        self.bounded.set()
        self.stop_delivery.set()
        self._claim_stop.set()
        self._wake.set()

    def reload(self) -> None:
        """Re-read the configuration at the next turn of the loop (SIGHUP)."""
        self._reloading.set()
        self._wake.set()

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> ExitCode:
        """Replay journals, announce readiness, loop, drain, replay again; the exit code
        (with --once: the run's, or 7 when records of it are left in the journal)."""
        if self._replayer is not None:
            self._replayer.replay("start", budget=START_REPLAY_BUDGET)
            self._replayer.start()
        self._notifier.ready(self._status_line())
        log.info("daemon ready", extra=fields(labels=",".join(self.settings.labels),
                                              concurrency=self.settings.concurrency))
        idle_since = self._clock()
        stopping_sent = False
        while True:
            self.metrics.beat()
            self._contact_tick()
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
        if self._replayer is not None:
            self._replayer.stop(timeout=1.0)
        self._exit_replay()
        code = self._exit
        if code == ExitCode.OK and self.settings.once and self.outcomes:
            code = JobOutcome(self.outcomes[0]).exit_code
        records, runs = self._safe_backlog()
        if records:
            log.warning("%d record(s) of %d run(s) wait in %s: the next 'ferry daemon' start or "
                        "'ferry sync' delivers them", records, runs, self._journal_dir,
                        extra=fields(waiting=records, runs=runs))
        log.info("daemon stopped", extra=fields(exit=int(code), runs=self.claimed,
                                                waiting=records))
        return code

    def _exit_replay(self) -> None:
        """Deliver what no run owns within what is left of the drain timeout."""
        if self._replayer is None or self.stop_delivery.is_set():
            return
        if JobOutcome.UNDELIVERED in self.outcomes:
            return  # the server did not take a run's records within the drain timeout
        since = self._bounded_since if self._bounded_since is not None else self._clock()
        budget = since + self.settings.drain_timeout - self._clock()
        if budget < 0.5:
            log.info("no time left of the drain timeout to replay journals at exit")
            return
        replayer = self._replayer
        thread = threading.Thread(target=lambda: replayer.replay("exit", budget=budget),
                                  name="ferry-exit-replay", daemon=True)
        thread.start()
        thread.join(budget + 1.0)
        if thread.is_alive():  # stuck in a request: the records stay in the journal
            log.warning("journal replay at exit stopped after %.0fs (the drain timeout)", budget)

    def _safe_backlog(self) -> tuple[int, int]:
        try:
            return self._backlog()
        except Exception as exc:  # a journal that cannot be read is reported by the replay
            log.debug("cannot count the journal backlog: %s", exc)
            return 0, 0

    def _contact_tick(self) -> None:
        was_down = self._contact.down
        self._contact.tick(lambda: self._safe_backlog()[0])
        if was_down and not self._contact.down and self._replayer is not None:
            self._replayer.kick()  # deliver what previous processes left, now
        if self.bounded.is_set() and self._bounded_since is None and not self._jobs:
            self._bounded_since = self._clock()

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
        if self._replayer is not None and self._replayer.busy:
            return  # journals first: see Replayer.busy
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
                    lambda: self._client.claim(list(labels), capacity=free, wait=wait,
                                               tasks=True))
            except BaseException as exc:
                result = exc
            self._claim_result.append(result)
            self._wake.set()

        self._claim_thread = threading.Thread(target=claim, name="ferry-claim", daemon=True)
        self._claim_thread.start()

    def _on_claim_retry(self, exc: BaseException, sleep: float) -> None:
        self.metrics.inc("claim_errors")
        self._contact.failed(exc)
        log.debug("claim failed, retrying in %.1fs: %s", sleep, exc)

    def _collect_claim(self) -> None:
        self._claim_thread = None
        result = self._claim_result.pop() if self._claim_result else None
        if isinstance(result, RetryStopped):
            return
        if isinstance(result, AuthError):
            if result.status == 403:  # the token is good; what it asked for is not allowed
                log.error("the control plane refused this runner's claim (%s); offer only the "
                          "labels it was registered with, or register it again with "
                          "'ferry register --labels ...'", result)
            else:
                log.error("the control plane refused the runner token (%s); re-register with "
                          "'ferry register'", result)
            self._exit = ExitCode.CONTROL
            self.drain()
            return
        if isinstance(result, Conflict) and result.code == "runner_draining":
            self._contact.ok()
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
        self._contact.ok()
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
        if self.settings.once:
            self.bounded.set()  # nothing else will be claimed: its delivery is bounded too
        self.metrics.inc("runs_claimed")
        log.info("task claimed" if claim.task else "run claimed",
                 extra=fields(run=run.id, task=claim.task, attempt=run.attempt, repo=run.repo,
                              workflow=run.workflow_path))
        cancel = threading.Event()
        key = f"{run.id}/{claim.task}" if claim.task else run.id  # tasks of one run side by side
        earlier = self._supersede(key)
        job = _Job(claim=claim, cancel=cancel, thread=threading.Thread(
            target=self._run_job, args=(key, earlier), name=f"ferry-run-{run.id[:8]}",
            daemon=True))
        self._jobs[key] = job
        self.metrics.set_running(len(self._jobs), self.settings.concurrency)
        self._notifier.status(self._status_line())
        job.thread.start()

    def _supersede(self, key: str) -> _Job | None:
        """The earlier attempt of the same run (or task) still ending in this daemon, if any.

        The server gave this run out again (its lease expired while this daemon was cut off),
        and the claim came back here before the earlier attempt's heartbeat learnt that its
        lease is gone. Both would use the run's workspace and journal: the earlier attempt is
        canceled and keeps its slot under another key until it ended; the new one waits for it
        (`_run_job`), so two attempts of one task never run here at once."""
        earlier = self._jobs.pop(key, None)
        if earlier is None or not earlier.thread.is_alive():
            if earlier is not None:
                self._jobs[key] = earlier  # ended: reaped as usual on the next turn
                self._reap()
            return None
        log.warning("run claimed again while its earlier attempt still ends here: canceling "
                    "that attempt and starting this one when it has ended",
                    extra=fields(run=earlier.claim.run.id, task=earlier.claim.task,
                                 attempt=earlier.claim.run.attempt))
        earlier.cancel.set()
        self._jobs[f"{key}#a{earlier.claim.run.attempt}"] = earlier
        return earlier

    def _run_job(self, run_id: str, earlier: _Job | None = None) -> None:
        job = self._jobs[run_id]
        if earlier is not None:
            earlier.thread.join()
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

    def _status_line(self) -> str:
        state = "draining" if self._draining.is_set() else "claiming"
        return (f"{state}; {len(self._jobs)}/{self.settings.concurrency} runs; "
                f"{self.claimed} claimed")
