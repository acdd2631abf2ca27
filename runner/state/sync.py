"""Delivery of journals to the control plane: in order, acknowledged, exactly once.

A `Syncer` owns one run's journal on the sending side. It sends unacknowledged records in order
(consecutive diffs of one writer as one `DiffBatch`, consecutive log records of one task as one
`LogChunk`), records each acknowledgement in the journal, and resolves the server's 409 answers:
`seq_gap` (the server already has a prefix: acknowledge it and go on), `offset_mismatch` (resend
from the server's offset, using the bytes the journal still holds), `lease_lost` (stop for good,
keep the journal). Transient errors back off through `runner.api.client.retrying`.

Exactly once comes from the server's idempotency (per writer+seq, per task+offset) plus the
journal: a record is acknowledged only after the server answered, and removed only after that.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from runner.api.client import ControlClient
from runner.api.protocol import DiffBatch, LogChunk, WireDiff
from runner.api.retry import DEFAULT_POLICY, RetryPolicy, RetryStopped, call_with_retry
from runner.errors import (
    AuthError,
    Conflict,
    FerryError,
    LeaseLost,
    PermanentError,
    StateError,
    TransientError,
)
from runner.state.journal import Journal, Record, journal_paths, journal_run_id

MAX_DIFFS_PER_BATCH = 500
WINDOW = 5000  # records considered per round
MAX_LOG_BYTES_PER_CHUNK = 512 * 1024
IDLE_WAKE = 5.0  # the background loop also looks again this often without a kick


class Syncer:
    """Sends one run's journal; use `deliver`/`sync` in the foreground or `start` a thread."""

    def __init__(self, client: ControlClient, journal: Journal, *, lease: str | None = None,
                 policy: RetryPolicy = DEFAULT_POLICY, stop_event: threading.Event | None = None,
                 on_retry: Callable[[BaseException, float], None] | None = None) -> None:
        self.client = client
        self.journal = journal
        self.lease = lease
        self.policy = policy
        self.stop_event = stop_event or threading.Event()
        self.on_retry = on_retry
        self.error: FerryError | None = None
        self.delivered = 0
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def run_id(self) -> str:
        """The run whose journal this is."""
        return self.journal.run_id

    # -- foreground ------------------------------------------------------------------------

    def deliver(self) -> int:
        """Send every pending record once, in order; returns how many were acknowledged.
        Raises `TransientError` (try again later), `LeaseLost` (journal kept, marked lost),
        `PermanentError`/`StateError` (needs a human)."""
        if self.journal.lost is not None:
            raise LeaseLost(f"run {self.run_id}: {self.journal.lost}")
        done = 0
        while not self.stop_event.is_set():
            records = self.journal.pending(limit=WINDOW)
            if not records:
                break
            try:
                upto = self._send(records)
            except LeaseLost as exc:
                self.journal.mark_lost(str(exc))
                raise
            before = self.journal.acked
            self.journal.ack(upto)
            done += upto - before
            self.delivered += upto - before
            self.journal.maybe_compact()
        return done

    def sync(self, policy: RetryPolicy | None = None) -> int:
        """`deliver` under the retry policy (transient errors back off and retry)."""
        return call_with_retry(self.deliver, policy or self.policy, stop_event=self.stop_event,
                               on_retry=self.on_retry)

    # -- background ------------------------------------------------------------------------

    def start(self) -> None:
        """Deliver on a background thread until `stop()`; new records arrive through `kick()`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"sync-{self.run_id[:8]}",
                                            daemon=True)
            self._thread.start()

    def kick(self) -> None:
        """Wake the background thread: there are new records."""
        self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record is acknowledged (True), the timeout passes (False), or the
        background thread stopped on an error (raised here)."""
        self.kick()
        with self._idle:
            ok = self._idle.wait_for(self._settled, timeout=timeout)
        if self.error is not None:
            raise self.error
        return bool(ok) and self.journal.backlog() == 0

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the background thread (the journal keeps whatever is not acknowledged)."""
        self.stop_event.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._idle:
            self._idle.notify_all()

    def _settled(self) -> bool:
        return (self.journal.backlog() == 0 or self.error is not None
                or self.stop_event.is_set())

    def _loop(self) -> None:
        forever = replace(self.policy, max_attempts=None, max_time=None)
        while not self.stop_event.is_set():
            self._wake.clear()
            try:
                if self.journal.backlog():
                    self.sync(forever)
            except RetryStopped:
                break
            except TransientError:
                continue  # only when the stop event ended the retries
            except FerryError as exc:
                self.error = exc
                break
            finally:
                with self._idle:
                    self._idle.notify_all()
            self._wake.wait(IDLE_WAKE)
        with self._idle:
            self._idle.notify_all()

    # -- one request -----------------------------------------------------------------------

    def _send(self, records: list[Record]) -> int:
        """Send the head of `records`; returns the highest record number now acknowledged.

        Diffs and logs between a `create` and a `finish` are independent streams on the server
        (diffs ordered per writer by seq, logs per task by offset), so a window of them goes as
        a few large requests: the diffs in order, then each task's bytes merged. The window is
        acknowledged only when all of it went through; a resend after a failure is deduplicated.
        """
        head = records[0]
        if head.kind == "create":
            self.client.report_run(head.data["doc"])
            return head.n
        if head.kind == "finish":
            self.client.finish(self.run_id, self._lease(head), str(head.data["status"]))
            return head.n
        window: list[Record] = []
        for rec in records:
            if rec.kind not in ("diff", "log"):
                break
            window.append(rec)
        if not window:
            raise StateError(f"{self.journal.path}: record {head.n} of unknown kind {head.kind!r}")
        diffs = [r for r in window if r.kind == "diff"]
        while diffs:
            done = self._send_diffs(diffs)
            diffs = [r for r in diffs if r.n > done]
        streams: dict[tuple[str, str | None], list[Record]] = {}
        for rec in window:
            if rec.kind == "log":
                streams.setdefault((str(rec.data["task"]), self._lease(rec)), []).append(rec)
        for logs in streams.values():
            while logs:
                done = self._send_logs(logs)
                logs = [r for r in logs if r.n > done]
        return window[-1].n

    def _lease(self, record: Record) -> str | None:
        lease = record.data.get("lease")
        return str(lease) if lease else self.lease

    def _send_diffs(self, records: list[Record]) -> int:
        head = records[0]
        writer, lease = head.data["diff"]["writer"], self._lease(head)
        batch: list[Record] = []
        for rec in records:
            if rec.kind != "diff" or rec.data["diff"]["writer"] != writer \
                    or self._lease(rec) != lease or len(batch) >= MAX_DIFFS_PER_BATCH:
                break
            batch.append(rec)
        wire = [WireDiff(writer=writer, seq=int(r.data["diff"]["seq"]), ops=r.data["diff"]["ops"],
                         ts=r.data["diff"].get("ts")) for r in batch]
        try:
            ack = self.client.send_diffs(self.run_id, DiffBatch(lease=lease, diffs=wire))
        except Conflict as exc:
            if exc.code != "seq_gap" or exc.expected_seq is None:
                raise
            # The server has every seq below expected_seq: those of ours are duplicates.
            have = [r for r, w in zip(batch, wire, strict=True) if w.seq < exc.expected_seq]
            if not have:
                raise StateError(
                    f"run {self.run_id}: the server expects seq {exc.expected_seq} from writer "
                    f"{writer} but the journal continues at {wire[0].seq}: diffs acknowledged "
                    "earlier are missing on the server") from exc
            return have[-1].n
        if ack.applied <= 0:
            raise PermanentError(f"run {self.run_id}: the server applied none of {len(batch)} "
                                 "diffs and gave no reason")
        return batch[min(ack.applied, len(batch)) - 1].n

    def _send_logs(self, records: list[Record]) -> int:
        head = records[0]
        task, lease = str(head.data["task"]), self._lease(head)
        start = int(head.data["offset"])
        parts: list[bytes] = []
        taken: list[Record] = []
        size = 0
        for rec in records:
            if rec.kind != "log" or rec.data["task"] != task or self._lease(rec) != lease \
                    or int(rec.data["offset"]) != start + size:
                break
            data = base64.b64decode(rec.data["data"])
            if taken and size + len(data) > MAX_LOG_BYTES_PER_CHUNK:
                break
            parts.append(data)
            taken.append(rec)
            size += len(data)
        blob = b"".join(parts)
        offset = start
        for _ in range(3):
            chunk = LogChunk(lease=lease, task=task, offset=offset,
                             data=base64.b64encode(blob[offset - start:]).decode())
            try:
                self.client.send_log(self.run_id, chunk)
                return taken[-1].n
            except Conflict as exc:
                if exc.code != "offset_mismatch" or exc.offset is None:
                    raise
                server = exc.offset
                if server >= start + len(blob):
                    return taken[-1].n  # all of it arrived before (a lost answer)
                if server < start:
                    raise StateError(
                        f"run {self.run_id}: task {task} log is {server} bytes on the server but "
                        f"the journal continues at byte {start}: acknowledged bytes are missing"
                    ) from exc
                offset = server  # part of it arrived: send the rest
        raise PermanentError(f"run {self.run_id}: task {task} log offsets keep moving")


@dataclass
class SyncResult:
    """What `sync_all` did for one journal."""

    run_id: str
    delivered: int = 0
    remaining: int = 0
    error: str | None = None
    lost: bool = False


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
        """Records still waiting in journals."""
        return sum(r.remaining for r in self.results)

    @property
    def ok(self) -> bool:
        """Everything that could be delivered was."""
        return not self.unreachable and all(r.error is None and not r.lost for r in self.results)


def sync_all(journal_dir: Path, client: ControlClient, *, policy: RetryPolicy = DEFAULT_POLICY,
             stop_event: threading.Event | None = None, skip: frozenset[str] = frozenset(),
             on_retry: Callable[[BaseException, float], None] | None = None) -> SyncReport:
    """Deliver every journal under `journal_dir` (`ferry sync`, and the daemon at start and exit).
    Journals in `skip` (runs a live syncer owns) are left alone. When the server stays
    unreachable the pass stops and says so; an `AuthError` is raised (nothing can go through)."""
    report = SyncReport()
    for path in journal_paths(journal_dir):
        try:
            journal = Journal(path)
        except StateError as exc:  # damaged in the middle: say so, deliver the others
            report.results.append(SyncResult(journal_run_id(path), error=str(exc)))
            continue
        if journal.run_id in skip:
            continue
        result = SyncResult(journal.run_id)
        report.results.append(result)
        if report.unreachable:
            result.remaining = journal.backlog()
            continue
        syncer = Syncer(client, journal, policy=policy, stop_event=stop_event, on_retry=on_retry)
        try:
            if journal.lost is not None:
                result.lost, result.error = True, journal.lost
            elif journal.backlog() == 0:
                journal.compact()
            else:
                syncer.sync()
        except AuthError:
            raise
        except LeaseLost as exc:
            result.lost, result.error = True, str(exc)
        except TransientError as exc:
            report.unreachable = True
            result.error = str(exc)
        except FerryError as exc:
            result.error = str(exc)
        finally:
            journal.close()
            result.delivered = syncer.delivered
            result.remaining = journal.backlog()
    return report
