"""The documented size limits that the runner and the control plane share.

The server refuses what passes them (413 with the limit named); the runner checks the same
numbers before it journals or sends, so that it never builds a record the server will refuse.
Sizes are bytes of compact JSON (`json_size`), the form the server stores.
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


def json_size(value: Any) -> int:
    """Bytes of `value` as compact JSON (ASCII-escaped), the measure of every limit above."""
    return len(json.dumps(value, separators=(",", ":")))
