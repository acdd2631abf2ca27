"""The documented size limits that the runner and the control plane share.

The server refuses what passes them (413 with the limit named); the runner checks the same
numbers before it journals or sends, so that it never builds a record the server will refuse
(a record refused later would strand the run). Sizes are bytes of compact JSON (`json_size`),
the form the server stores.

What the runner adds on its side: a step may write at most `MAX_OUTPUTS_FILE_BYTES` to
$STATE_OUTPUTS or $TASK_OUTPUTS and no value over `MAX_STATE_VALUE_BYTES` (the step fails with
the key, the size and the limit); one journaled change is at most `MAX_RECORD_BYTES` (larger
ones fail the step or the run where they are made); output is journaled in records of
`MAX_LOG_RECORD_BYTES`; no request body is larger than `MAX_REQUEST_BYTES`, half the server's
default, so a control plane started with `--max-body` at or above it takes every request.
"""

from __future__ import annotations

import json
from typing import Any

MIB = 1024 * 1024

MAX_DOCUMENT_BYTES = 32 * MIB
"""A run document (compact JSON) may not grow past this: a diff that would is refused."""

MAX_STATE_VALUE_BYTES = 1 * MIB
"""One value of the workflow state (`/state/<key>`) or of a task's outputs
(`/tasks/<id>/outputs/<key>`), as compact JSON."""

MAX_BODY_BYTES = 16 * MIB
"""The server's default request body limit (`ferry-server --max-body`)."""

MAX_DIFFS_PER_BATCH = 1000
"""Diffs in one `POST /runs/{id}/diffs` batch."""

MAX_OPS_PER_BATCH = 100_000
"""RFC 6902 operations in one batch, all its diffs together."""

MAX_LOG_OFFSET = 2**53 - 1
"""The largest log offset the protocol carries (exact in every JSON implementation)."""

MAX_REQUEST_BYTES = 8 * MIB
"""The largest request body the runner sends (diff batches and log chunks are cut to fit)."""

MAX_RECORD_BYTES = 4 * MIB
"""One change of a run (a diff's operations as compact JSON) the runner journals at most."""

MAX_LOG_RECORD_BYTES = 1 * MIB
"""Task output per journal record (larger chunks are split)."""

MAX_OUTPUTS_FILE_BYTES = 2 * MIB
"""What one step may write to $STATE_OUTPUTS or to $TASK_OUTPUTS."""


def json_size(value: Any) -> int:
    """Bytes of `value` as compact JSON (ASCII-escaped), the measure of every limit above."""
    return len(json.dumps(value, separators=(",", ":")))


def human_size(n: int) -> str:
    """`1048576` -> `1 MiB`, `1536` -> `1.5 KiB`, `12` -> `12 bytes` (for error messages)."""
    for unit, size in (("MiB", MIB), ("KiB", 1024)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"
