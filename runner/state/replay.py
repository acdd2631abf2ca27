"""Journals left behind, delivered later (`ferry sync`, the daemon at start, in the background and
at exit), and what becomes of a journal that can never be delivered.

`sync_all` goes through every journal not owned by a live process and reports, per journal, what
was delivered, what is left and why. `settle` disposes of a journal the server will never take,
so nothing is retried forever and nothing is dropped silently:

    LeaseLost        another attempt owns the run (the server re-queued it and someone claimed
                     it): the file is moved to `journal/superseded/`; that attempt redoes the work
    JournalDamaged   records are lost to damage (a failed checksum in the middle of the file) or
                     the server lacks records it acknowledged: what comes before the damage is
                     delivered, the run is ended Failed on the server with the reason, and the
                     file is moved to `journal/damaged/`
    RecordRefused    the server refuses a record as such (413 too large, 422 does not apply): the
                     run is ended Failed with the reason, the file goes to `journal/refused/`

Ending a run "Failed with the reason" sends one diff from the writer `recovery/<writer>` (seq 1,
so a second try is a duplicate) setting `status`, `error` and `ended_at`, then `finish` Failed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runner.api.client import ControlClient
from runner.api.protocol import DiffBatch, WireDiff
from runner.api.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry
from runner.document import RunStatus, TaskStatus, run_field_op, task_field_op, utc_now
from runner.errors import (
    AuthError,
    Conflict,
    FerryError,
    LeaseLost,
    PermanentError,
    StateError,
    TransientError,
)
from runner.state.journal import Journal, JournalBusy, journal_paths, journal_run_id
from runner.state.sync import JournalDamaged, RecordRefused, Syncer


@dataclass
class SyncResult:
    """What was done with one journal."""

    run_id: str
    delivered: int = 0
    remaining: int = 0
    error: str | None = None
    """Why records are left (the journal is kept and tried again later)."""
    skipped: str | None = None
    """Why the journal was not touched (another process owns it)."""
    aside: Path | None = None
    """Where the journal went when it can never be delivered."""
    aside_kind: str | None = None
    reason: str | None = None
    """Why it can never be delivered."""
    run_ended: bool = False
    """The run was ended Failed on the server (damaged or refused journals)."""
    damage: list[str] = field(default_factory=list)
    torn: int = 0
    unreachable: bool = False

    @property
    def lost(self) -> bool:
        """The journal was set aside because another attempt owns the run."""
        return self.aside_kind == "superseded"

    def describe(self) -> str:
        """One line: what was delivered, what is left, and why."""
        head = f"run {self.run_id}: {self.delivered} record(s) delivered"
        if self.skipped:
            return f"run {self.run_id}: skipped ({self.skipped})"
        if self.aside is not None:
            ended = "; the run was ended Failed on the server" if self.run_ended else ""
            return (f"{head}, {self.remaining} never deliverable ({self.reason}){ended}; journal "
                    f"moved to {self.aside}")
        if self.error:
            return f"{head}, {self.remaining} left ({self.error})"
        return f"{head}, 0 left"


@dataclass
class SyncReport:
    """What `sync_all` did, journal by journal."""

    results: list[SyncResult] = field(default_factory=list)
    unreachable: bool = False

    @property
    def delivered(self) -> int:
        """Records acknowledged in this pass."""
        return sum(r.delivered for r in self.results)

    @property
    def remaining(self) -> int:
        """Records still waiting in journals (set-aside ones do not wait any more)."""
        return sum(r.remaining for r in self.results if r.aside is None)

    @property
    def ok(self) -> bool:
        """Everything that could be delivered was (set-aside journals count as settled)."""
        return not self.unreachable and all(r.error is None for r in self.results)


def sync_all(journal_dir: Path, client: ControlClient, *, policy: RetryPolicy = DEFAULT_POLICY,
             stop_event: threading.Event | None = None, skip: frozenset[str] = frozenset(),
             on_retry: Callable[[BaseException, float], None] | None = None,
             on_ack: Callable[[int], None] | None = None) -> SyncReport:
    """Deliver every journal under `journal_dir`. Journals in `skip` and journals another process
    owns are left alone. When the server stays unreachable the pass stops and says so; a 401
    (`AuthError`) is raised: nothing can go through with that token."""
    report = SyncReport()
    for path in journal_paths(journal_dir):
        run_id = journal_run_id(path)
        if run_id in skip:
            continue
        try:
            journal = Journal(path)
        except JournalBusy:
            report.results.append(SyncResult(run_id, skipped="in use by another ferry process"))
            continue
        except StateError as exc:
            report.results.append(SyncResult(run_id, error=str(exc)))
            continue
        result = SyncResult(run_id, damage=list(journal.damage), torn=journal.torn)
        report.results.append(result)
        try:
            if report.unreachable:
                result.error = "control plane unreachable"
                continue
            deliver_one(journal, client, result, policy=policy, stop_event=stop_event,
                        on_retry=on_retry, on_ack=on_ack)
            report.unreachable = report.unreachable or result.unreachable
        finally:
            if result.aside is None:
                result.remaining = journal.backlog()
            journal.close()
    return report


def deliver_one(journal: Journal, client: ControlClient, result: SyncResult, *,
                policy: RetryPolicy = DEFAULT_POLICY, stop_event: threading.Event | None = None,
                on_retry: Callable[[BaseException, float], None] | None = None,
                on_ack: Callable[[int], None] | None = None) -> None:
    """Deliver one journal into `result`; settle it when it can never be delivered."""
    syncer = Syncer(client, journal, policy=policy, stop_event=stop_event, on_retry=on_retry,
                    on_ack=on_ack)
    try:
        if journal.backlog() == 0 and journal.gap is None and journal.lost is None:
            journal.compact()
        else:
            syncer.sync()
    except (LeaseLost, JournalDamaged, RecordRefused) as exc:
        result.remaining = journal.backlog()
        try:
            settle(journal, client, exc, result, policy=policy, stop_event=stop_event)
        except TransientError as again:
            result.error, result.unreachable = str(again), True
        except FerryError as again:
            result.error = str(again)
    except AuthError as exc:
        if exc.status == 401:
            raise
        result.error = str(exc)
    except TransientError as exc:
        result.error, result.unreachable = str(exc), True
    except FerryError as exc:
        result.error = str(exc)
    finally:
        result.delivered = syncer.delivered


def settle(journal: Journal, client: ControlClient, exc: FerryError, result: SyncResult, *,
           policy: RetryPolicy = DEFAULT_POLICY,
           stop_event: threading.Event | None = None) -> Path:
    """Dispose of a journal the server will never take (see the module doc); returns where it
    went. `TransientError` when the run could not be ended yet (the journal stays: try later)."""
    if isinstance(exc, LeaseLost):
        kind, reason = "superseded", f"another attempt owns the run ({exc})"
    else:
        kind = "damaged" if isinstance(exc, JournalDamaged) else "refused"
        reason = str(exc)
        ended = end_run_failed(client, journal, reason, policy=policy, stop_event=stop_event)
        result.run_ended = ended is None
        if ended is not None:
            reason += f"; the run could not be ended on the server: {ended}"
    result.aside_kind, result.reason = kind, reason
    result.aside = journal.set_aside(kind, reason)
    return result.aside


def end_run_failed(client: ControlClient, journal: Journal, reason: str, *,
                   policy: RetryPolicy = DEFAULT_POLICY,
                   stop_event: threading.Event | None = None) -> str | None:
    """End the journal's run Failed with `reason` on the server; None when done, else why not
    (the run belongs to someone else, or the server refused). Transient errors are raised."""
    records = journal.pending() or []
    leases = [r.lease for r in records if r.lease] or sorted(journal.leases())
    writers = [str(r.data["diff"]["writer"]) for r in records if r.kind == "diff"]
    return report_failed(client, journal.run_id, leases[-1] if leases else None,
                         writers[-1] if writers else journal.run_id, reason, policy=policy,
                         stop_event=stop_event)


def report_failed(client: ControlClient, run_id: str, lease: str | None, writer: str,
                  reason: str, *, policy: RetryPolicy = DEFAULT_POLICY,
                  stop_event: threading.Event | None = None,
                  task: str | None = None) -> str | None:
    """Tell the server directly, without the journal, that the run ended Failed with `reason`
    (with `task`, a distributed run's task whose lease this is: that task ended Failed): one
    diff from `recovery/<writer>` (seq 1: a second try is a duplicate), then `finish`.
    None when done, else why not; transient errors are raised after the policy's retries."""
    first = reason.splitlines()[0] if reason else "the run could not be delivered"
    if task:
        ops = [task_field_op(task, "status", TaskStatus.FAILED.value),
               task_field_op(task, "error", first[:2000]),
               task_field_op(task, "ended_at", utc_now())]
    else:
        ops = [run_field_op("status", RunStatus.FAILED.value),
               run_field_op("error", first[:2000]), run_field_op("ended_at", utc_now())]
    batch = DiffBatch(lease=lease, diffs=[WireDiff(writer=f"recovery/{writer}"[:200], seq=1,
                                                   ops=ops)])

    def end() -> None:
        try:
            client.send_diffs(run_id, batch)
        except Conflict as exc:
            if exc.code != "seq_gap":  # seq_gap: a first try already went in
                raise
        client.finish(run_id, lease, RunStatus.FAILED.value)

    try:
        call_with_retry(end, policy, stop_event=stop_event)
    except LeaseLost as exc:
        return f"another attempt owns it ({exc})"
    except PermanentError as exc:
        return str(exc)
    return None
