"""Diffs: RFC 6902 operations plus who wrote them and in which order.

The document at any time is the fold of its diffs. Applying uses the `jsonpatch` library
(in place: copying a 10,000-task document per diff would make a run quadratic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from runner.errors import StateError

Op = dict[str, Any]


@dataclass(frozen=True)
class Diff:
    """One atomic change of one run: applied whole or not at all, once per (writer, seq)."""

    run_id: str
    writer: str
    seq: int
    ops: list[Op]
    ts: str | None = None
    lease: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The wire/journal form."""
        out: dict[str, Any] = {"run_id": self.run_id, "writer": self.writer, "seq": self.seq,
                               "ops": self.ops}
        if self.ts is not None:
            out["ts"] = self.ts
        if self.lease is not None:
            out["lease"] = self.lease
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Diff:
        """Parse the wire/journal form."""
        return cls(run_id=data["run_id"], writer=data["writer"], seq=int(data["seq"]),
                   ops=list(data["ops"]), ts=data.get("ts"), lease=data.get("lease"))


class PatchConflict(StateError):
    """A diff does not apply to the document (wrong path, failed test op)."""


def apply_ops(doc: dict[str, Any], ops: list[Op]) -> dict[str, Any]:
    """Apply operations to `doc` in place and return it. On failure `doc` may be partly changed:
    callers that need atomicity apply to a copy or roll back (backends do it in a transaction)."""
    try:
        result = jsonpatch.apply_patch(doc, ops, in_place=True)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError,
            IndexError, TypeError) as exc:
        raise PatchConflict(f"diff does not apply: {exc}") from exc
    if not isinstance(result, dict):
        raise PatchConflict("diff replaced the whole document with a non-object")
    return result
