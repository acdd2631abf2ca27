"""One claimed run, from confirmation to the delivered finish record.

    start (confirm the claim) -> heartbeats on their own thread -> workflow file at the run's
    commit (cached) -> workspace archive (checked, extracted) -> load and validate ->
    the server's document (resume: completed tasks are not run again) -> the engine's
    Executor through a journal-first ApiBackend (lease token in every write) -> finish
    record journaled -> delivered (`runner.control.delivery`).

A run that cannot be prepared for a reason retrying will not fix (the archive is refused, the
workflow file is missing or invalid at that commit, the disk is full) ends Failed on the server
with the reason; one that cannot be prepared because the server stayed unreachable goes back to
the queue when its lease expires. When the journal cannot be written (a full disk) the run
fails and the failure is reported to the server directly. A lost lease stops the run's work and
keeps its journal; it is never reported as an outcome of the run. The daemon loop runs one
`RunJob` per claimed run on its own thread.

A claim that names a task (a distributed run: the server plans it) is a task job: the same
steps, but the engine runs that one task (`Executor.execute_task`) with the task's lease and its
own writer (`<runner>/<task>/a<attempt>`), journal (`journal/tasks/<task>/`) and workspace copy
(`work/<run>/workspaces/<task>`), and the finish hands the task back. Several task jobs of one
run may run side by side, on this daemon and on others; a failure it must report fails the task.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from runner.api.client import ControlClient
from runner.api.protocol import ClaimResponse
from runner.api.retry import RetryPolicy
from runner.control.calls import JobCalls
from runner.control.checkouts import Checkouts
from runner.control.contact import Contact
from runner.control.delivery import Delivery
from runner.control.events import LogEvents
from runner.control.job_journal import adopt, fail_run
from runner.control.lease import LeaseKeeper
from runner.control.logs import RedactingFilter, fields
from runner.control.metrics import DaemonMetrics
from runner.control.outcome import JobOutcome, task_outcome
from runner.control.prefetch import Prefetch
from runner.control.workspace import (
    WorkflowCache,
    Workspace,
    prepare,
    workspace_dir,
)
from runner.document import RunStatus
from runner.engine.events import EventSink
from runner.engine.executor import Executor, ExecutorSettings
from runner.errors import (
    FerryError,
    LeaseLost,
    NoSpace,
    PermanentError,
    StateError,
    TooLarge,
    TransientError,
    WorkflowInvalid,
)
from runner.paths import Paths
from runner.runtimes.base import Runtime
from runner.state.api import ApiBackend
from runner.state.journal import JournalBusy
from runner.state.journal_files import TASK_JOURNALS
from runner.state.runlock import RunLock, wait_for_lock

log = logging.getLogger("ferry.daemon")

LEASE_LOST = JobOutcome.LEASE_LOST
ERROR = JobOutcome.ERROR
UNDELIVERED = JobOutcome.UNDELIVERED


@dataclass(frozen=True)
class JobSettings:
    """How runs are executed and reported."""

    runner_id: str
    max_parallel: int = 4
    heartbeat_interval: float | None = 1.0
    """Seconds between heartbeats; bounds how fast a cancel reaches the tasks (None: ttl/3)."""
    fetch_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(
        max_attempts=8, initial=0.5, max_wait=10.0))
    sync_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(
        max_attempts=None, initial=0.2, max_wait=10.0))
    flush_step: float = 5.0
    """How often a job waiting for delivery looks at its cancel event."""
    drain_timeout: float = 60.0
    """Once delivery is bounded (the daemon drains, or --once), seconds a finished run's records
    get to reach the server before they are left in the journal."""
    keep_workspace: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    """What host steps and `${{env.NAME}}` see: the allowed part of the daemon's environment."""
    masked: tuple[str, ...] = ()
    """The runner's tokens: masked in all step output like secrets."""
    step_owner: tuple[int, int] | None = None
    """(uid, gid) of a root daemon's step user: each workspace is handed to it."""
    codemod_bin: Path | None = None
    """The Codemod CLI for codemod steps (None: such steps fail saying how to install it)."""
    idle_checkouts: int = 1
    """Task checkouts kept, reset, for the next task of their run (`control.checkouts`)."""
    log_linger: float = 0.2
    """Seconds step output waits in the journal for more before it is sent when no state
    change goes with it (`Syncer.log_linger`): a task's output as fewer requests, not one per
    chunk its steps printed (a 100-file codemod shard: 20 before, 10 now), at most this much
    later."""


class _Handback:
    """A job's checkout, given back to `Checkouts` once (reset on a thread of its own for
    the run's next task, or removed), as soon as the job no longer needs it."""

    def __init__(self, checkouts: Checkouts, path: Path, *, task: bool, keep: bool) -> None:
        self._checkouts = checkouts
        self._path = path
        self._task = task
        self._done = keep  # --keep-workspace: it stays as the job left it

    def release(self) -> None:
        if self._done:
            return
        self._done = True
        if self._task:  # a task's: reset on a thread of its own
            self._checkouts.release(self._path)
        else:  # a whole run's is removed before the job ends
            self._checkouts.give_back(self._path)


ExecutorFactory = Callable[[ApiBackend, Mapping[str, Runtime], ExecutorSettings, EventSink],
                          Executor]


class RunJob:
    """Callable by the daemon loop: executes one claimed run, returns its outcome."""

    def __init__(self, settings: JobSettings, *, client: ControlClient, paths: Paths,
                 runtimes: Mapping[str, Runtime], metrics: DaemonMetrics,
                 executor_factory: ExecutorFactory | None = None,
                 stop_delivery: threading.Event | None = None,
                 redactor: RedactingFilter | None = None,
                 bounded: threading.Event | None = None,
                 contact: Contact | None = None) -> None:
        self.settings = settings
        self._redactor = redactor
        self._client = client
        self._paths = paths
        self._runtimes = runtimes
        self._metrics = metrics
        self._cache = WorkflowCache(paths.workflows_cache)
        self._checkouts = Checkouts(0 if settings.keep_workspace else settings.idle_checkouts)
        self._executor_factory = executor_factory
        self._stop_delivery = stop_delivery or threading.Event()
        self._bounded = bounded or threading.Event()
        self._contact = contact or Contact(client.display_url, metrics)
        self._calls = JobCalls(client, settings.fetch_retry, self._stop_delivery, self._contact)
        self._validated: set[Path] = set()
        self._lock = threading.Lock()

    def __call__(self, claim: ClaimResponse, cancel: threading.Event) -> JobOutcome:
        """Run the claimed run to its end; the outcome is a run status or a reason. The run's
        lock is held throughout: `ferry prune` (and the retention pass) leave it alone."""
        lock = RunLock(self._paths.data_dir / "locks",
                       f"{claim.run.id}.{claim.task}" if claim.task else claim.run.id)
        if not wait_for_lock(lock, cancel):
            log.warning("run lock held by another process; running anyway",
                        extra=fields(run=claim.run.id, holder=lock.holder_pid()))
        try:
            return self._run(claim, cancel)
        finally:
            lock.release()

    def _run(self, claim: ClaimResponse, cancel: threading.Event) -> JobOutcome:
        run = claim.run
        lease = claim.lease
        # The document is only read here (writes wait for the confirmation below), so it is
        # fetched while the claim is confirmed: one round trip fewer before the first step.
        document = Prefetch(lambda: self._client.get_run(run.id), name=f"ferry-doc-{run.id[:8]}")
        try:
            answer = self._calls.retry(lambda: self._client.start(run.id, lease.token))
        except (LeaseLost, PermanentError) as exc:
            log.warning("claim could not be confirmed: %s", exc, extra=fields(run=run.id))
            self._metrics.inc("runs_lease_lost")
            return LEASE_LOST
        except FerryError as exc:
            log.error("claim could not be confirmed: %s", exc, extra=fields(run=run.id))
            self._metrics.inc("runs_errored")
            return ERROR
        keeper = LeaseKeeper(self._client, run.id, lease.token, answer.ttl or lease.ttl,
                             cancel=cancel, metrics=self._metrics,
                             interval=self.settings.heartbeat_interval, contact=self._contact)
        if answer.cancel_requested:
            keeper.cancel_requested.set()
            cancel.set()
        keeper.start()
        journal = self._paths.journal_dir
        if claim.task:  # one journal per task job: its own lease, delivered on its own
            journal = journal / TASK_JOURNALS / claim.task
        backend = ApiBackend(self._client, journal, self._paths.logs_dir,
                             policy=self.settings.sync_retry, on_retry=self._calls.on_sync_retry,
                             on_ack=self._calls.on_ack, log_linger=self.settings.log_linger)
        delivery = Delivery(self._client, backend, self._metrics, run.id, lease.token,
                            self._writer(claim), self.settings.drain_timeout, self._bounded,
                            self._stop_delivery, keeper.lost, self.settings.fetch_retry,
                            self.settings.flush_step, task=claim.task)
        checkout = _Handback(self._checkouts, workspace_dir(self._paths.run_work_dir(run.id),
                                                            claim.task),
                             task=claim.task is not None, keep=self.settings.keep_workspace)
        try:
            return self._execute(claim, cancel, keeper, backend, document, delivery, checkout)
        finally:
            keeper.stop()
            backend.close(timeout=1.0 if self._stop_delivery.is_set() else 10.0)
            if claim.task:  # delivered: its journal file is gone, its folder goes too
                with contextlib.suppress(OSError):  # not empty: records wait for a replay
                    journal.rmdir()
            checkout.release()

    def settle(self, timeout: float) -> None:
        """Before the daemon exits: let checkouts being reset finish (said when they do not)."""
        if not self._checkouts.settle(timeout):
            log.warning("task checkouts were still being reset after %.0f s: they stay in their "
                        "run's work folder until it is pruned (runner.retention, ferry prune)",
                        timeout)

    def _writer(self, claim: ClaimResponse) -> str:
        """This attempt's diff writer: the run's, or the task's for a task job."""
        task = f"{claim.task}/" if claim.task else ""
        return f"{self.settings.runner_id}/{task}a{claim.run.attempt}"

    # -- steps -------------------------------------------------------------------------------
    def _execute(self, claim: ClaimResponse, cancel: threading.Event, keeper: LeaseKeeper,
                 backend: ApiBackend, document: Prefetch, delivery: Delivery,
                 checkout: _Handback) -> JobOutcome:
        run = claim.run
        writer = self._writer(claim)
        doc: dict[str, Any] | None = None
        try:
            doc = document.result()
            workspace = self._fetch(claim)
            if doc is None:  # the early read failed: now with retries
                doc = self._calls.retry(lambda: self._client.get_run(run.id))
            offsets = self._calls.log_offsets(run.id, doc, claim.task)
        except (FerryError, OSError) as exc:
            if keeper.lost.is_set():
                self._metrics.inc("runs_lease_lost")
                return LEASE_LOST
            error = self._as_error(exc)
            if isinstance(error, TransientError):
                log.error("run could not be prepared: %s; it goes back to the queue when its "
                          "lease expires", error, extra=fields(run=run.id))
                self._metrics.inc("runs_errored")
                return ERROR
            return self._unpreparable(claim, backend, doc, writer,
                                      f"the run could not be prepared: {error}", delivery)
        try:
            aside = adopt(backend, doc, claim.lease.token, offsets, self._stop_delivery)
        except JournalBusy as exc:
            log.error("run could not be started: %s", exc, extra=fields(run=run.id))
            self._metrics.inc("runs_errored")
            return ERROR
        except StateError as exc:  # the journal cannot be created (a full disk)
            return delivery.report_directly(str(exc))
        for warning in doc.get("warnings") or []:  # what validation warned about the workflow
            log.warning("workflow: %s", warning, extra=fields(run=run.id))
        if aside is not None:
            self._metrics.inc("journals_set_aside")
            log.warning("an earlier attempt's journal of this run can never be delivered (this "
                        "claim superseded its lease): moved to %s", aside,
                        extra=fields(run=run.id, moved_to=str(aside)))
        try:
            status = self._execute_run(backend, workspace, claim, writer, cancel)
        except (StateError, TooLarge) as exc:  # a change could not be journaled
            return delivery.report_directly(str(exc))
        finally:
            # its steps are over and its patch journaled: reset while the records are delivered
            checkout.release()
        if keeper.lost.is_set():
            self._metrics.inc("runs_lease_lost")
            return LEASE_LOST
        return delivery.deliver(status)

    def _execute_run(self, backend: ApiBackend, workspace: Workspace, claim: ClaimResponse,
                     writer: str, cancel: threading.Event) -> str:
        """Validate the workflow (once per cached file) and execute the run; its status."""
        run_id = claim.run.id
        bundle = workspace.root / PurePosixPath(claim.run.workflow_path).parent
        try:
            # The server validated it when the run was queued; the engine runs the document's
            # copy. Checking again here catches a runner older than the workflow's features;
            # a commit never changes, so once per cached file is enough.
            if workspace.workflow_file not in self._validated:
                self._load(workspace.workflow_file, bundle)
                with self._lock:
                    self._validated.add(workspace.workflow_file)
        except WorkflowInvalid as exc:
            log.error("workflow is invalid at this commit: %s", exc, extra=fields(run=run_id))
            fail_run(backend, run_id, writer, f"workflow is invalid at this commit: {exc}",
                           claim.task)
            return RunStatus.FAILED.value
        executor = self._make_executor(backend, writer, workspace.root, claim, bundle)
        if claim.task:
            return task_outcome(executor.execute_task(run_id, claim.task, cancel),
                                cancel.is_set())
        return str(executor.execute(run_id, cancel))

    def _unpreparable(self, claim: ClaimResponse, backend: ApiBackend,
                      doc: dict[str, Any] | None, writer: str, reason: str,
                      delivery: Delivery) -> JobOutcome:
        """End a run that cannot be prepared Failed with the reason (through the journal)."""
        run = claim.run
        log.error("%s", reason, extra=fields(run=run.id))
        base = doc or {"id": run.id, "status": RunStatus.PENDING.value, "tasks": {}}
        try:
            adopt(backend, base, claim.lease.token, {}, self._stop_delivery)
            fail_run(backend, run.id, writer, reason, claim.task)
        except StateError as exc:
            return delivery.report_directly(f"{reason}; {exc}")
        return delivery.deliver(RunStatus.FAILED.value)

    def _as_error(self, exc: FerryError | OSError) -> FerryError:
        if isinstance(exc, FerryError):
            return exc
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return NoSpace(os.path.dirname(exc.filename or "") or self._paths.data_dir,
                           "cannot write the run's files")
        return StateError(f"{exc.filename or 'a file'}: {exc.strerror or exc}")

    def _fetch(self, claim: ClaimResponse) -> Workspace:
        run = claim.run
        return prepare(self._cache, self._paths.run_work_dir(run.id), run.repo, run.commit,
                       run.workflow_path, task=claim.task,
                       fetch_blob=lambda: self._calls.retry(lambda: self._client.get_blob(
                           run.repo, run.commit, run.workflow_path)),
                       fetch_archive=lambda to: self._calls.retry(lambda: self._client.get_archive(
                           run.repo, run.commit, to)),
                       step_owner=self.settings.step_owner,
                       checkouts=None if self.settings.keep_workspace else self._checkouts)

    def _load(self, path: Path, bundle: Path) -> Any:
        from runner.workflow.validate import load_workflow

        # the codemod package is the workflow's directory in the checkout
        return load_workflow(path, bundle=bundle, claimed=True)

    def _make_executor(self, backend: ApiBackend, writer: str, workspace: Path,
                       claim: ClaimResponse, bundle_dir: Path | None = None) -> Executor:
        # The claim's secrets live in memory only: the executor masks them in everything it
        # writes (journal, logs, diffs), and the daemon's log lines are redacted too.
        secrets = {k: v.get_secret_value() for k, v in claim.secrets.items()}
        secret_params = {k: v.get_secret_value() for k, v in claim.secret_params.items()}
        if self._redactor is not None:
            self._redactor.add(*secrets.values(), *secret_params.values())
        settings = ExecutorSettings(writer=writer, max_parallel=self.settings.max_parallel,
                                    workspace=workspace, control_root=self._paths.work_dir,
                                    env=self.settings.env, runner_id=self.settings.runner_id,
                                    bundle_dir=bundle_dir,
                                    secrets=secrets, secret_params=secret_params,
                                    masked=self.settings.masked,
                                    step_traverse=self.settings.step_owner is not None,
                                    codemod_bin=self.settings.codemod_bin,
                                    checkout=True)
        factory = self._executor_factory or _default_executor
        return factory(backend, self._runtimes, settings, LogEvents(claim.run.id))


def _default_executor(backend: ApiBackend, runtimes: Mapping[str, Runtime],
                      settings: ExecutorSettings, events: EventSink) -> Executor:
    return Executor(backend, runtimes, settings, events=events)
