"""Delivery of a journal to the control plane: in order, acknowledged, exactly once.

A `Syncer` owns one run's journal on the sending side. It sends unacknowledged records in order
(consecutive diffs of one writer and lease as one `DiffBatch`, consecutive log records of one
task as one `LogChunk`, each request under `MAX_REQUEST_BYTES`), records each acknowledgement in
the journal, and resolves the server's 409 answers: `seq_gap` (the server already has a prefix:
acknowledge it and go on) and `offset_mismatch` (resend from the server's offset, using the bytes
the journal still holds). Transient errors back off through `runner.api.retry`.

What can never go through is raised as one of three typed errors, and `settle` (in
`runner.state.replay`) disposes of the journal: `LeaseLost` (another attempt owns the run),
`JournalDamaged` (records lost to damage, or acknowledged ones missing on the server) and
`RecordRefused` (the server refuses a record as such: too large, does not apply).

Exactly once comes from the server's idempotency (per writer+seq, per task+offset) plus the
journal: a record is acknowledged only after the server answered, and removed only after that.
Every record carries its own lease, so any process (the daemon after a restart, `ferry sync`)
can deliver it later.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from runner.api.client import ControlClient
from runner.api.protocol import DiffBatch, LogChunk, WireDiff
from runner.api.retry import DEFAULT_POLICY, RetryPolicy, RetryStopped, call_with_retry
from runner.errors import (
    Conflict,
    FerryError,
    LeaseLost,
    PermanentError,
    StateError,
    TransientError,
)
from runner.limits import MAX_OPS_PER_BATCH, MAX_REQUEST_BYTES, json_size
from runner.state.journal import Journal, Record

MAX_DIFFS_PER_BATCH = 500  # under runner.limits.MAX_DIFFS_PER_BATCH
WINDOW = 5000  # records considered per round
MAX_LOG_BYTES_PER_CHUNK = 512 * 1024
IDLE_WAKE = 5.0  # the background loop also looks again this often without a kick
_BATCH_BYTES = MAX_REQUEST_BYTES - 64 * 1024  # room for the batch's own JSON around the diffs


class JournalDamaged(StateError):
    """Records of the journal can never be delivered: lost to damage, or the server lacks
    records it acknowledged earlier."""


class RecordRefused(PermanentError):
    """The server refuses a record for good (too large, does not apply): retrying cannot help."""


REFUSED_STATUSES = frozenset({413, 422})


class Syncer:
    """Sends one run's journal; use `deliver`/`sync` in the foreground or `start` a thread."""

    def __init__(self, client: ControlClient, journal: Journal, *, lease: str | None = None,
                 policy: RetryPolicy = DEFAULT_POLICY, stop_event: threading.Event | None = None,
                 on_retry: Callable[[BaseException, float], None] | None = None,
                 on_ack: Callable[[int], None] | None = None,
                 log_linger: float = 0.0) -> None:
        self.client = client
        self.journal = journal
        self.log_linger = log_linger
        """How long the background thread lets records wait that are all log output (no diff
        among them) for more to come, so that a task's output goes as a few requests rather
        than one per chunk its steps printed; a diff, `flush` or `stop` sends at once."""
        self.lease = lease
        self.policy = policy
        self.stop_event = stop_event or threading.Event()
        self.on_retry = on_retry
        self.on_ack = on_ack
        self.error: FerryError | None = None
        self.delivered = 0
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._flushing = 0
        self._thread: threading.Thread | None = None

    @property
    def run_id(self) -> str:
        """The run whose journal this is."""
        return self.journal.run_id

    # -- foreground ------------------------------------------------------------------------

    def deliver(self) -> int:
        """Send every deliverable record once, in order; returns how many were acknowledged.
        Raises `TransientError` (try again later), `LeaseLost`, `JournalDamaged` or
        `RecordRefused` (never deliverable: see `replay.settle`), `PermanentError`/`StateError`
        (a configuration or server problem: the journal is kept)."""
        if self.journal.lost is not None:
            raise LeaseLost(f"run {self.run_id}: {self.journal.lost}")
        done = 0
        while not self.stop_event.is_set():
            records = self.journal.pending(limit=WINDOW)
            if not records:
                break
            upto = self._send(records)
            before = self.journal.acked
            self.journal.ack(upto)
            done += upto - before
            self.delivered += upto - before
            if self.on_ack is not None:
                self.on_ack(upto - before)
            self.journal.maybe_compact()
        if self.journal.gap is not None and not self.stop_event.is_set():
            raise JournalDamaged(
                f"journal {self.journal.path} is damaged ({'; '.join(self.journal.damage)}): "
                f"record {self.journal.gap} and the {self.journal.backlog()} after it cannot be "
                "delivered")
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
        with self._idle:
            self._flushing += 1
        self.kick()
        try:
            with self._idle:
                ok = self._idle.wait_for(self._settled, timeout=timeout)
        finally:
            with self._idle:
                self._flushing -= 1
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

    @property
    def running(self) -> bool:
        """Whether the background thread is still alive (it may be stuck in a request)."""
        return self._thread is not None and self._thread.is_alive()

    def _settled(self) -> bool:
        return (self.journal.backlog() == 0 or self.error is not None
                or self.stop_event.is_set())

    def _loop(self) -> None:
        forever = replace(self.policy, max_attempts=None, max_time=None)
        while not self.stop_event.is_set():
            self._wake.clear()
            self._linger()
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

    def _linger(self) -> None:
        """Wait (up to `log_linger`) while every pending record is log output."""
        if self.log_linger <= 0:
            return
        deadline = time.monotonic() + self.log_linger
        while not self.stop_event.is_set():
            with self._idle:
                if self._flushing:
                    return
            pending = self.journal.pending(limit=WINDOW)
            if not pending or any(r.kind != "log" for r in pending):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wake.wait(left)
            self._wake.clear()

    # -- one request -----------------------------------------------------------------------

    def _send(self, records: list[Record]) -> int:
        """Send the head of `records`; returns the highest record number now acknowledged.

        Diffs and logs between a `create` and a `finish` are independent streams on the server
        (diffs ordered per writer by seq, logs per task by offset), so a window of them goes as
        a few large requests: the diffs in order, then each task's bytes merged. A window ends
        before a diff that ends a task whose output is in it (see the comments below). The window is
        acknowledged only when all of it went through; a resend after a failure is deduplicated.
        """
        head = records[0]
        try:
            if head.kind == "create":
                self.client.report_run(head.data["doc"])
                return head.n
            if head.kind == "finish":
                self.client.finish(self.run_id, self._lease(head), str(head.data["status"]))
                return head.n
        except PermanentError as exc:
            raise _refused(exc, head) from exc
        window: list[Record] = []
        logged: set[str] = set()
        for rec in records:
            if rec.kind not in ("diff", "log"):
                break
            if rec.kind == "log":
                logged.add(str(rec.data["task"]))
            elif window and _ends_a_task(rec, logged):
                # A task's end must not reach the server before its output (were the runner to
                # die in between, its output would be stranded): it opens the next round.
                break
            window.append(rec)
        if not window:
            raise StateError(f"{self.journal.path}: record {head.n} of unknown kind {head.kind!r}")
        # The diffs first: a task's start reaches the server before its output, so a new
        # attempt finds the task started and asks the server how much output it already has.
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
        return record.lease or self.lease

    def _send_diffs(self, records: list[Record]) -> int:
        head = records[0]
        writer, lease = head.data["diff"]["writer"], self._lease(head)
        batch: list[Record] = []
        size = ops = 0
        for rec in records:
            if rec.kind != "diff" or rec.data["diff"]["writer"] != writer \
                    or self._lease(rec) != lease or len(batch) >= MAX_DIFFS_PER_BATCH:
                break
            weight, count = _wire_size(rec), len(rec.data["diff"]["ops"])
            if batch and (size + weight > _BATCH_BYTES or ops + count > MAX_OPS_PER_BATCH):
                break  # never a batch the server refuses for its size
            batch.append(rec)
            size += weight
            ops += count
        wire = [WireDiff(writer=writer, seq=int(r.data["diff"]["seq"]), ops=r.data["diff"]["ops"],
                         ts=r.data["diff"].get("ts")) for r in batch]
        try:
            ack = self.client.send_diffs(self.run_id, DiffBatch(lease=lease, diffs=wire))
        except Conflict as exc:
            if exc.code != "seq_gap" or exc.expected_seq is None:
                raise _refused(exc, head) from exc
            # The server has every seq below expected_seq: those of ours are duplicates.
            have = [r for r, w in zip(batch, wire, strict=True) if w.seq < exc.expected_seq]
            if not have:
                raise JournalDamaged(
                    f"run {self.run_id}: the server expects seq {exc.expected_seq} from writer "
                    f"{writer} but the journal continues at {wire[0].seq}: diffs acknowledged "
                    "earlier are missing on the server") from exc
            return have[-1].n
        except PermanentError as exc:
            applied = _applied(exc)
            if applied:  # the prefix went in before the refusal: keep it acknowledged
                return batch[min(applied, len(batch)) - 1].n
            raise _refused(exc, batch[0]) from exc
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
                    raise _refused(exc, head) from exc
                server = exc.offset
                if server >= start + len(blob):
                    return taken[-1].n  # all of it arrived before (a lost answer)
                if server < start:
                    raise JournalDamaged(
                        f"run {self.run_id}: task {task} log is {server} bytes on the server but "
                        f"the journal continues at byte {start}: acknowledged bytes are missing"
                    ) from exc
                offset = server  # part of it arrived: send the rest
            except PermanentError as exc:
                raise _refused(exc, head) from exc
        raise PermanentError(f"run {self.run_id}: task {task} log offsets keep moving")


_ENDED = frozenset({"Completed", "Failed"})


def _ends_a_task(record: Record, tasks: set[str]) -> bool:
    """Whether a diff record sets one of `tasks` Completed or Failed."""
    for op in record.data["diff"].get("ops") or ():
        path = str(op.get("path", ""))
        if path.startswith("/tasks/") and path.endswith("/status") \
                and op.get("value") in _ENDED and path[7:-7] in tasks:
            return True
    return False


def _wire_size(record: Record) -> int:
    """About how many bytes a diff record takes in a request body."""
    return json_size(record.data["diff"]["ops"]) + 200


def _applied(exc: PermanentError) -> int:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("applied"), int):
        return int(body["applied"])
    return 0


def _refused(exc: PermanentError, record: Record) -> PermanentError:
    """`RecordRefused` when the server refuses the record itself for good, else `exc`."""
    if exc.status in REFUSED_STATUSES:
        return RecordRefused(f"the server refused record {record.n} ({record.kind}): {exc}",
                             exc.status, exc.body)
    return exc
