"""Size rules for what runners write: bounded work per batch, bounded documents and values.

Three rules, each a 413 naming its limit (`runner.limits` has the defaults):
- a batch holds at most `max_ops` operations (checked before anything is applied);
- the `copy` operations of a batch copy at most `max_value` bytes together, checked before each
  runs, so `copy` cannot amplify a small request into a huge document (every other operation
  writes no more than the request carries, which the body limit bounds);
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


class CopyBudget:
    """Bytes the `copy` operations of a batch may still copy, charged before each runs.

    Every other operation writes at most what the request carries (bounded by the body limit);
    a copy writes what it finds in the document, so 19 doublings of a 1.5 KB value ask for
    750 MB. Copies of one batch together may copy at most one value's limit (`max_value`):
    the work and the time a batch holds the write lock stay proportional to its size.
    """

    def __init__(self, limits: Limits) -> None:
        self.limit = limits.max_value
        self.copied = 0

    def charge(self, doc: dict[str, Any], op: dict[str, Any], where: str) -> None:
        """Count what a `copy` copies; 413 `batch_too_large` once the batch passes the limit."""
        if op.get("op") != "copy" or not isinstance(op.get("from"), str):
            return
        try:
            source = jsonpointer.resolve_pointer(doc, op["from"])
        except (jsonpointer.JsonPointerException, TypeError):
            return  # does not apply: the patch itself refuses it
        # measured no further than the budget left: a huge source costs no more than the limit
        self.copied += bounded_size(source, self.limit - self.copied + 1)
        if self.copied > self.limit:
            raise too_large("batch_too_large", f"{where}: the batch's copy operations copy more"
                            f" than {self.limit} bytes (the limit of one value)", self.limit)


def bounded_size(value: Any, cap: int) -> int:
    """The compact-JSON size of `value`, or a number over `cap` as soon as it is known to pass
    it (containers are walked, so a huge list is not serialized to learn that it is large)."""
    if isinstance(value, dict):
        total = 1  # '{' and '}', less the comma the first item does not have
        for key, item in value.items():
            total += json_size(str(key)) + 2 + bounded_size(item, cap - total)  # ':' and ','
            if total > cap:
                return total
        return total + (0 if value else 1)
    if isinstance(value, list):
        total = 1
        for item in value:
            total += 1 + bounded_size(item, cap - total)
            if total > cap:
                return total
        return total + (0 if value else 1)
    return json_size(value)


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
