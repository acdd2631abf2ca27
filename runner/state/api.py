"""`ApiBackend`: a journal-first `StateBackend` for runs reported to a control plane.

Every write is applied to the in-memory document (which checks it), then appended to the run's
journal (fsynced), then mirrored to an optional local backend (so `ferry status/logs` work
offline), and the run's `Syncer` is kicked to deliver it. The run never waits for the server:
while the control plane is down, work goes on and the journal grows; it is delivered later,
exactly once (by the background syncer, the daemon's replay or `ferry sync`). Every record
carries the run's lease, so any process can deliver it. A change larger than
`MAX_RECORD_BYTES` is refused (`TooLarge`) before it is journaled: nothing is ever written that
the server would refuse for its size; output is journaled in records of `MAX_LOG_RECORD_BYTES`.

`changes_since` returns nothing: other writers (a user's cancel, a trigger) reach a run executed
for a control plane through the daemon's heartbeats, not through this backend.
"""

from __future__ import annotations

import base64
import copy
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.api.client import ControlClient
from runner.api.retry import DEFAULT_POLICY, RetryPolicy
from runner.diff import Diff, PatchConflict, apply_ops
from runner.errors import SeqGap, StateError, TooLarge, UnknownRun
from runner.limits import (
    MAX_DOCUMENT_BYTES,
    MAX_LOG_RECORD_BYTES,
    MAX_RECORD_BYTES,
    MAX_REQUEST_BYTES,
    human_size,
    json_size,
)
from runner.state.backend import RunSummary, StateBackend
from runner.state.journal import Journal
from runner.state.logfiles import TaskLogs
from runner.state.sync import Syncer


@dataclass
class _Run:
    """One run held by this backend."""

    base: dict[str, Any]
    doc: dict[str, Any]
    journal: Journal
    syncer: Syncer
    lease: str | None
    next_seq: dict[str, int] = field(default_factory=dict)
    diffs: list[Diff] = field(default_factory=list)
    log_offsets: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    size: int = -1
    """An upper bound of the document's size (compact JSON); -1 until first measured."""
    adopted: bool = False
    """Claimed from the server: a task's output starts where the server's log ends (0 unless
    `log_offsets` says otherwise), whatever a local copy left by an earlier attempt holds."""


class ApiBackend:
    """`StateBackend` that journals every write and delivers it to the control plane."""

    shared = False
    """One process executes a run at a time (its run lock, or its lease)."""

    def announce(self, writer: str) -> None:
        """Nothing to announce: no other process executes this run meanwhile."""

    def alive(self, writer: str) -> bool:
        """No other process runs tasks of our runs: a Running task found is interrupted."""
        return False

    def __init__(self, client: ControlClient, journal_dir: Path, logs_dir: Path, *,
                 mirror: StateBackend | None = None, policy: RetryPolicy = DEFAULT_POLICY,
                 background: bool = True, fsync: bool = True,
                 on_retry: Callable[[BaseException, float], None] | None = None,
                 on_ack: Callable[[int], None] | None = None,
                 log_linger: float = 0.0) -> None:
        self.client = client
        self.journal_dir = journal_dir
        self._log_linger = log_linger
        self.logs_dir = logs_dir
        self._logs = TaskLogs(logs_dir)
        self.mirror = mirror
        self.policy = policy
        self.background = background
        self._fsync = fsync
        self._on_retry = on_retry
        self._on_ack = on_ack
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    # -- runs ------------------------------------------------------------------------------

    def create_run(self, doc: dict[str, Any]) -> None:
        """Journal a `create` record (the server learns of the run through `/runs/report`)."""
        run_id = str(doc["id"])
        size = json_size(doc)
        if size > MAX_REQUEST_BYTES - 64 * 1024:  # it goes whole in one request
            raise TooLarge(f"the run document is {size} bytes, over the limit of "
                           f"{MAX_REQUEST_BYTES - 64 * 1024} bytes for reporting a run")
        with self._lock:
            if run_id in self._runs:
                return
            run = self._open(doc, lease=None)
            if run.journal.last == 0:
                run.journal.append([{"kind": "create", "doc": doc}])
            self._runs[run_id] = run
        if self.mirror is not None:
            self.mirror.create_run(copy.deepcopy(doc))
        self._started(run)

    def adopt(self, doc: dict[str, Any], *, lease: str,
              log_offsets: Mapping[str, int] | None = None) -> Path | None:
        """Take over a claimed run from the server's document; writes carry `lease`.
        `log_offsets` are the server's log lengths of tasks that already have output. A journal
        an earlier attempt left here can never be delivered (this claim superseded its lease):
        it is set aside first; its new place is returned."""
        run_id = str(doc["id"])
        aside: Path | None = None
        with self._lock:
            old = Journal.for_run(self.journal_dir, run_id, fsync=self._fsync)
            if old.backlog() or old.damage or old.lost:
                others = old.leases() - {lease}
                why = (f"attempt with lease ...{lease[-6:]} claimed the run" if others or
                       not old.leases() else "damaged")
                aside = old.set_aside("superseded", f"an earlier attempt's records: {why}")
            else:
                old.close()
            run = self._open(doc, lease=lease)
            run.adopted = True
            run.log_offsets.update(log_offsets or {})
            self._runs[run_id] = run
        if self.mirror is not None:
            self.mirror.create_run(copy.deepcopy(doc))
        self._started(run)
        return aside

    def _open(self, doc: dict[str, Any], *, lease: str | None) -> _Run:
        run_id = str(doc["id"])
        journal = Journal.for_run(self.journal_dir, run_id, fsync=self._fsync)
        syncer = Syncer(self.client, journal, lease=lease, policy=self.policy,
                        on_retry=self._on_retry, on_ack=self._on_ack,
                        log_linger=self._log_linger)
        return _Run(base=copy.deepcopy(doc), doc=copy.deepcopy(doc), journal=journal,
                    syncer=syncer, lease=lease)

    def _started(self, run: _Run) -> None:
        if self.background:
            run.syncer.start()
            run.syncer.kick()

    def _run(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            run = self._recover(run_id)
        return run

    def _recover(self, run_id: str) -> _Run:
        """After a restart: the mirror's document plus journal diffs it may have missed."""
        if self.mirror is None:
            raise UnknownRun(f"no run {run_id} in this process (api backend without local copy)")
        with self._lock:
            if run_id in self._runs:
                return self._runs[run_id]
            doc = self.mirror.load(run_id)
            run = self._open(doc, lease=None)
            for diff in self.mirror.history(run_id):
                run.next_seq[diff.writer] = max(run.next_seq.get(diff.writer, 1), diff.seq + 1)
            for rec in run.journal.pending():
                if rec.kind == "diff":  # journaled but maybe not mirrored before a crash
                    diff = Diff.from_json({**rec.data["diff"], "run_id": run_id})
                    if self.mirror.apply(diff):
                        apply_ops(run.doc, copy.deepcopy(diff.ops))
                    run.next_seq[diff.writer] = max(run.next_seq.get(diff.writer, 1),
                                                    diff.seq + 1)
                    run.lease = run.lease or rec.lease
            run.base = copy.deepcopy(run.doc)
            self._runs[run_id] = run
        self._started(run)
        return run

    def resolve_run_id(self, ref: str) -> str:
        """A run of this process by id, else the local copy's resolution of a prefix."""
        if ref in self._runs:
            return ref
        if self.mirror is not None:
            return self.mirror.resolve_run_id(ref)
        matches = [rid for rid in self._runs if len(ref) >= 4 and rid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        raise UnknownRun(f"unknown run id '{ref}'")

    def load(self, run_id: str) -> dict[str, Any]:
        """The run's document as this process has it."""
        run = self._run(run_id)
        with run.lock:
            return copy.deepcopy(run.doc)

    def apply(self, diff: Diff) -> bool:
        """Apply in memory, journal (fsynced), mirror, then kick the syncer."""
        run = self._run(diff.run_id)
        with run.lock:
            expected = run.next_seq.get(diff.writer, 1)
            if diff.seq < expected:
                return False
            if diff.seq > expected:
                raise SeqGap(diff.writer, diff.seq, expected)
            added = _check_size(diff)  # before anything changes: a refused change leaves no trace
            ops = copy.deepcopy(diff.ops)  # the document must not share objects with history
            try:
                apply_ops(run.doc, copy.deepcopy(ops))
                self._check_document(run, added)
            except (PatchConflict, TooLarge):
                self._rebuild(run)
                raise
            record: dict[str, Any] = {"kind": "diff", "diff": diff.to_json()}
            record["diff"].pop("lease", None)
            lease = diff.lease or run.lease
            if lease:
                record["lease"] = lease
            try:
                run.journal.append([record])
            except StateError:
                self._rebuild(run)
                raise
            run.next_seq[diff.writer] = expected + 1
            run.diffs.append(Diff(run_id=diff.run_id, writer=diff.writer, seq=diff.seq, ops=ops,
                                  ts=diff.ts, lease=lease))
        if self.mirror is not None:
            self.mirror.apply(diff)
        run.syncer.kick()
        return True

    @staticmethod
    def _check_document(run: _Run, added: int) -> None:
        """`TooLarge` when the change made the document pass `MAX_DOCUMENT_BYTES`. The size is
        tracked as an upper bound (each change adds its own size); the document is measured
        only when that bound passes the limit, so a run pays for few full measurements."""
        if run.size < 0:
            run.size = json_size(run.doc)
        else:
            run.size += added
        if run.size <= MAX_DOCUMENT_BYTES:
            return
        run.size = json_size(run.doc)
        if run.size > MAX_DOCUMENT_BYTES:
            size, run.size = run.size, -1
            limit = MAX_DOCUMENT_BYTES
            raise TooLarge(f"this change would make the run document {size} bytes, over the "
                           f"limit of {limit} bytes ({human_size(limit)})")

    def _rebuild(self, run: _Run) -> None:
        doc = copy.deepcopy(run.base)
        for old in run.diffs:
            apply_ops(doc, copy.deepcopy(old.ops))
        run.doc = doc

    def finish(self, run_id: str, status: str) -> None:
        """Journal the run's end (final status, or AwaitingTrigger to release it)."""
        run = self._run(run_id)
        record: dict[str, Any] = {"kind": "finish", "status": status}
        if run.lease:
            record["lease"] = run.lease
        run.journal.append([record])
        run.syncer.kick()

    def changes_since(self, run_id: str, cursor: int) -> tuple[list[Diff], int]:
        """Nothing: other writers reach such a run through heartbeats (see the module doc)."""
        return [], cursor

    def position(self, run_id: str, writer: str) -> tuple[int, int]:
        """Cursor 0 (see `changes_since`) and the writer's last seq known for the run."""
        run = self._run(run_id)
        with run.lock:
            return 0, run.next_seq.get(writer, 1) - 1

    def history(self, run_id: str) -> list[Diff]:
        """Every diff of the run (from the local copy when there is one)."""
        if self.mirror is not None:
            return self.mirror.history(run_id)
        run = self._run(run_id)
        with run.lock:
            return list(run.diffs)

    def list_runs(self, limit: int = 20, status: str | None = None) -> list[RunSummary]:
        """Runs known locally, most recent first."""
        if self.mirror is not None:
            return self.mirror.list_runs(limit, status)
        out = [RunSummary(id=rid, name=str(r.doc.get("name") or ""), status=str(r.doc["status"]),
                          created_at=str(r.doc.get("created_at") or ""),
                          started_at=r.doc.get("started_at"), ended_at=r.doc.get("ended_at"))
               for rid, r in self._runs.items() if status is None or r.doc["status"] == status]
        return sorted(out, key=lambda s: s.created_at, reverse=True)[:limit]

    # -- logs ------------------------------------------------------------------------------

    def log_path(self, run_id: str, task_id: str) -> Path:
        """The local copy of a task's log."""
        return self._logs.path(run_id, task_id)

    def append_log(self, run_id: str, task_id: str, data: bytes) -> None:
        """Journal the bytes at the task's offset, then append them to the local log file."""
        if not data:
            return
        run = self._run(run_id)
        with run.lock:
            offset = run.log_offsets.get(task_id)
            if offset is None and run.adopted:
                offset = 0
            elif offset is None:  # a run of this machine: the local copy is what was journaled
                path = self.log_path(run_id, task_id)
                offset = path.stat().st_size if path.exists() else 0
            records: list[dict[str, Any]] = []
            for start in range(0, len(data), MAX_LOG_RECORD_BYTES):
                part = data[start:start + MAX_LOG_RECORD_BYTES]
                record: dict[str, Any] = {"kind": "log", "task": task_id,
                                          "offset": offset + start,
                                          "data": base64.b64encode(part).decode()}
                if run.lease:
                    record["lease"] = run.lease
                records.append(record)
            run.journal.append(records)
            run.log_offsets[task_id] = offset + len(data)
            if self.mirror is not None:
                self.mirror.append_log(run_id, task_id, data)
            else:
                self._logs.append(run_id, task_id, data)
        run.syncer.kick()

    def read_log(self, run_id: str, task_id: str, offset: int = 0) -> bytes:
        """The local copy of a task's output from byte `offset` on."""
        if self.mirror is not None:
            return self.mirror.read_log(run_id, task_id, offset)
        return self._logs.read(run_id, task_id, offset)

    # -- delivery --------------------------------------------------------------------------

    def syncer(self, run_id: str) -> Syncer:
        """The run's syncer (its `error`, its journal's `lost` mark, its backlog)."""
        return self._run(run_id).syncer

    def flush(self, run_id: str, timeout: float | None = None) -> bool:
        """Wait until the run's journal is fully acknowledged (False on timeout)."""
        run = self._run(run_id)
        if not self.background:
            run.syncer.sync()
            return run.journal.backlog() == 0
        return run.syncer.flush(timeout)

    def backlog(self, run_id: str) -> int:
        """Records of the run not acknowledged yet."""
        return self._run(run_id).journal.backlog()

    def close(self, timeout: float = 10.0) -> None:
        """Stop every syncer (waiting at most `timeout` for one stuck in a request) and close
        the journals (they keep whatever is not acknowledged)."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.syncer.stop(timeout)
            run.journal.close()
        if self.mirror is not None:
            self.mirror.close()


def _check_size(diff: Diff) -> int:
    """The change's size; `TooLarge` for one the control plane could not take in a request."""
    size = json_size(diff.ops)
    if size > MAX_RECORD_BYTES:
        raise TooLarge(f"a change of {size} bytes is over the limit of {MAX_RECORD_BYTES} bytes "
                       f"({human_size(MAX_RECORD_BYTES)}) for one change of a run")
    return size
