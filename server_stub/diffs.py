"""Applying a batch of diffs: idempotent per (run, writer, seq), gaps refused, each diff atomic,
size rules enforced before anything is stored (`bounds`), the document written once per batch.

A run the server has ended (`final`: finished Completed/Failed/Canceled by its runner, canceled
while idle, failed for lost leases) keeps its outcome: a late diff that touches the run's status,
`ended_at`, `cancel_requested` or a finished task is recorded in the history as `ignored` and not
applied; other late diffs (state, outputs of unfinished tasks) still apply.
"""

from __future__ import annotations

import json
from typing import Any

from runner.api.protocol import DiffAck, WireDiff
from runner.diff import PatchConflict, apply_ops
from runner.document import TERMINAL_TASK
from server_stub.bounds import CopyBudget, Limits, check_document, check_op_count, touched_values
from server_stub.errors import ApiError
from server_stub.runs import SERVER_WRITER, Documents, check_ops, next_seq, record_diff
from server_stub.store.base import Conn

_RUN_OUTCOME = ("status", "ended_at", "cancel_requested")
_TASK_STATES = frozenset(s.value for s in TERMINAL_TASK)


def _changes_outcome(doc: dict[str, Any], ops: list[dict[str, Any]]) -> bool:
    """Whether `ops` may touch what a final run keeps: its outcome fields, or a finished task."""
    tasks = doc.get("tasks") if isinstance(doc.get("tasks"), dict) else {}
    assert isinstance(tasks, dict)
    for op in ops:
        for key in ("path", "from"):
            target = op.get(key)
            if key == "from" and op.get("op") != "move":
                continue  # a copy's source is only read
            if not isinstance(target, str):
                continue
            parts = target.split("/")[1:]
            if (parts[:1] and parts[0] in _RUN_OUTCOME) or parts == ["tasks"]:
                return True
            if parts[:1] == ["tasks"] and len(parts) >= 2:
                task = tasks.get(parts[1].replace("~1", "/").replace("~0", "~"))
                finished = isinstance(task, dict) and task.get("status") in _TASK_STATES
                if finished and (len(parts) == 2 or parts[2] == "status"):
                    return True
    return False


def apply_batch(conn: Conn, docs: Documents, run_id: str, diffs: list[WireDiff],
                limits: Limits, *, final: bool = False) -> tuple[DiffAck, ApiError | None]:
    """Apply `diffs` in order inside the caller's transaction, stopping at the first refusal.

    Returns the acknowledgement of the accepted prefix and the refusal, if any: the caller
    commits the prefix and then answers with the refusal (its body carries `applied`). A batch
    that breaks a size rule after it was applied raises instead (nothing of it is stored).
    """
    check_op_count(diffs, limits)
    doc = docs.get(conn, run_id)
    expected: dict[str, int] = {}
    applied = duplicates = 0
    done: list[WireDiff] = []
    first_new: int | None = None  # index of the first diff this batch records
    refusal: ApiError | None = None
    budget = CopyBudget(limits)
    for index, diff in enumerate(diffs):
        if diff.writer == SERVER_WRITER:
            refusal = ApiError(403, "forbidden", f"diffs[{index}]: writer '{SERVER_WRITER}' is "
                               "reserved for the server", applied=applied + duplicates)
            break
        want = expected.get(diff.writer) or next_seq(conn, run_id, diff.writer)
        if diff.seq < want:
            duplicates += 1
            expected[diff.writer] = want
            continue
        if diff.seq > want:
            refusal = ApiError(409, "seq_gap", f"diffs[{index}]: writer {diff.writer} sent seq "
                               f"{diff.seq}, expected {want}", expected_seq=want,
                               applied=applied + duplicates)
            break
        where = f"diffs[{index}] (writer {diff.writer} seq {diff.seq})"
        ignored = final and _changes_outcome(doc, diff.ops)
        if not ignored:
            try:
                check_ops(diff.ops)
                for op in diff.ops:  # one at a time: each is charged before it runs
                    budget.charge(doc, op, where)
                    apply_ops(doc, [op])
            except (PatchConflict, ApiError) as exc:
                # The document may be half-patched: rebuild it from the stored one and the prefix.
                docs.drop(run_id)
                doc = docs.get(conn, run_id)
                for ok in done:
                    apply_ops(doc, ok.ops)
                if isinstance(exc, ApiError):
                    exc.extra["applied"] = applied + duplicates
                    refusal = exc
                else:
                    refusal = ApiError(422, "diff_conflict", f"{where}: {exc}",
                                       applied=applied + duplicates)
                break
            done.append(diff)
        record_diff(conn, run_id, diff.writer, diff.seq, diff.ops, diff.ts, ignored=ignored)
        first_new = index if first_new is None else first_new
        applied += 1
        expected[diff.writer] = diff.seq + 1
    if done:
        text = json.dumps(doc, separators=(",", ":"))
        check_document(doc, text, touched_values(op for d in done for op in d.ops), limits,
                       first_new or 0)
        docs.save(conn, run_id, doc, text)
    writers = {d.writer for d in diffs}
    ack = DiffAck(applied=applied + duplicates, duplicates=duplicates,
                  next_seq={w: expected.get(w) or next_seq(conn, run_id, w) for w in writers})
    return ack, refusal
