"""Size rules for what runners write: bounded work per batch, bounded documents and values.

Three rules, each a 413 naming its limit (`runner.limits` has the defaults):
- a batch holds at most `max_ops` operations (checked before anything is applied);
- a batch writes at most `max_document` bytes of values, a `copy` counted at the size of what
  it copies; checked before each operation runs, so `copy` cannot amplify a small request into
  a huge document (the work and the time holding the write lock stay proportional to the limit);
- after the batch, the document is at most `max_document` bytes and every state value and task
  output value it touched at most `max_value` bytes, or the whole batch is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jsonpointer

from runner.api.protocol import WireDiff
from runner.limits import json_size
from server_stub.errors import ApiError

_WRITES = ("add", "replace", "test")


@dataclass(frozen=True)
class Limits:
    """The server's size limits."""

    max_document: int
    max_value: int
    max_ops: int


def too_large(error: str, message: str, limit: int, applied: int | None = None) -> ApiError:
    """A 413 answer naming the limit."""
    return ApiError(413, error, message, limit=limit, applied=applied)


def check_op_count(diffs: Iterable[WireDiff], limits: Limits) -> None:
    """Refuse a batch of more than `max_ops` operations before any is applied."""
    count = sum(len(d.ops) for d in diffs)
    if count > limits.max_ops:
        raise too_large("batch_too_large", f"the batch holds {count} operations; at most "
                        f"{limits.max_ops} are accepted in one request", limits.max_ops, 0)


class WriteBudget:
    """Bytes a batch may still write; charged before each operation runs."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.written = 0

    def charge(self, doc: dict[str, Any], op: dict[str, Any], where: str) -> None:
        """Count what `op` writes; 413 `document_too_large` once the batch passes the limit."""
        kind = op.get("op")
        if kind in _WRITES and "value" in op:
            size = json_size(op["value"])
        elif kind == "copy" and isinstance(op.get("from"), str):
            try:
                size = json_size(jsonpointer.resolve_pointer(doc, op["from"]))
            except (jsonpointer.JsonPointerException, TypeError):
                return  # does not apply: the patch itself refuses it
        else:
            return
        self.written += size + len(str(op.get("path", ""))) + 4
        if self.written > self.limits.max_document:
            raise too_large("document_too_large", f"{where}: the batch writes more than "
                            f"{self.limits.max_document} bytes (copies count at their size);"
                            f" the run document limit is {self.limits.max_document} bytes",
                            self.limits.max_document)


def touched_values(ops: Iterable[dict[str, Any]]) -> set[tuple[str, ...]]:
    """Which state keys and task outputs the operations may have changed: ("state", key),
    ("state",) for the whole state, ("task", id) for a whole task or ("tasks",) for all of them,
    ("outputs", id, key) or ("outputs", id)."""
    found: set[tuple[str, ...]] = set()
    for op in ops:
        path = op.get("path")
        if not isinstance(path, str):
            continue
        parts = [jsonpointer.unescape(p) for p in path.split("/")[1:]]
        if parts[:1] == ["state"]:
            found.add(("state", parts[1]) if len(parts) > 1 else ("state",))
        elif parts[:1] == ["tasks"]:
            if len(parts) == 1:
                found.add(("tasks",))
            elif len(parts) == 2:
                found.add(("task", parts[1]))
            elif parts[2] == "outputs":
                found.add(("outputs", parts[1], parts[3]) if len(parts) > 3
                          else ("outputs", parts[1]))
    return found


def _values(doc: dict[str, Any], touched: set[tuple[str, ...]]
            ) -> Iterable[tuple[str, Any]]:
    state = doc.get("state") if isinstance(doc.get("state"), dict) else {}
    tasks = doc.get("tasks") if isinstance(doc.get("tasks"), dict) else {}
    assert isinstance(state, dict) and isinstance(tasks, dict)

    def outputs(task_id: str) -> dict[str, Any]:
        task = tasks.get(task_id)
        out = task.get("outputs") if isinstance(task, dict) else None
        return out if isinstance(out, dict) else {}

    for what in touched:
        if what == ("state",):
            yield from ((f"state key {k!r}", v) for k, v in state.items())
        elif what[0] == "state" and what[1] in state:
            yield f"state key {what[1]!r}", state[what[1]]
        elif what == ("tasks",):
            for task_id in tasks:
                yield from ((f"task {task_id} output {k!r}", v)
                            for k, v in outputs(task_id).items())
        elif what[0] in ("task", "outputs") and len(what) == 2:
            yield from ((f"task {what[1]} output {k!r}", v) for k, v in outputs(what[1]).items())
        elif what[0] == "outputs" and what[2] in outputs(what[1]):
            yield f"task {what[1]} output {what[2]!r}", outputs(what[1])[what[2]]


def check_document(doc: dict[str, Any], text: str, touched: set[tuple[str, ...]],
                   limits: Limits, applied: int) -> None:
    """After a batch: the stored text and every touched value within their limits."""
    if len(text) > limits.max_document:
        raise too_large("document_too_large", f"the run document would be {len(text)} bytes; "
                        f"the limit is {limits.max_document} bytes", limits.max_document,
                        applied)
    for name, value in _values(doc, touched):
        size = json_size(value)
        if size > limits.max_value:
            raise too_large("value_too_large", f"{name} would be {size} bytes; the limit for "
                            f"one value is {limits.max_value} bytes", limits.max_value, applied)
