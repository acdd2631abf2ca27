"""Applying a batch of diffs: idempotent per (run, writer, seq), gaps refused, each diff atomic,
the document written once per batch."""

from __future__ import annotations

import sqlite3

from runner.api.protocol import DiffAck, WireDiff
from runner.diff import PatchConflict, apply_ops
from server_stub.errors import ApiError
from server_stub.runs import SERVER_WRITER, Documents, check_ops, next_seq, record_diff


def apply_batch(conn: sqlite3.Connection, docs: Documents, run_id: str,
                diffs: list[WireDiff]) -> tuple[DiffAck, ApiError | None]:
    """Apply `diffs` in order inside the caller's transaction, stopping at the first refusal.

    Returns the acknowledgement of the accepted prefix and the refusal, if any: the caller
    commits the prefix and then answers with the refusal (its body carries `applied`).
    """
    doc = docs.get(conn, run_id)
    expected: dict[str, int] = {}
    applied = duplicates = 0
    done: list[WireDiff] = []
    refusal: ApiError | None = None
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
        try:
            check_ops(diff.ops)
            apply_ops(doc, diff.ops)
        except PatchConflict as exc:
            # The document may be half-patched: rebuild it from the stored one and the prefix.
            docs.drop(run_id)
            doc = docs.get(conn, run_id)
            for ok in done:
                apply_ops(doc, ok.ops)
            refusal = ApiError(422, "diff_conflict", f"diffs[{index}] (writer {diff.writer} seq "
                               f"{diff.seq}): {exc}", applied=applied + duplicates)
            break
        record_diff(conn, run_id, diff.writer, diff.seq, diff.ops, diff.ts)
        done.append(diff)
        applied += 1
        expected[diff.writer] = diff.seq + 1
    if done:
        docs.save(conn, run_id, doc)
    writers = {d.writer for d in diffs}
    ack = DiffAck(applied=applied + duplicates, duplicates=duplicates,
                  next_seq={w: expected.get(w) or next_seq(conn, run_id, w) for w in writers})
    return ack, refusal

