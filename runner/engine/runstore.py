"""The executor's copy of one run document and the only way the executor writes to it.

Every change goes through `commit(ops)`: one `Diff` with the store's writer and the next seq,
applied to the backend first, then to the in-memory copy (the same ops, deep-copied so the two
never share objects). `refresh()` reads what other writers applied (a trigger, a cancel) and
reloads the copy when there is any. All of it happens under one re-entrant lock, which readers
of the live document (variable resolution) hold too.

A writer id must be unique per process: two processes writing as the same writer would take the
same seq, and the backend would drop the second diff as a duplicate. `commit` turns that case
into a `StateError` instead of losing the change silently.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from runner.diff import Diff, apply_ops
from runner.document import Op, TaskStatus
from runner.errors import StateError
from runner.state.backend import StateBackend


class RunStore:
    """One run's live document, its diff writer and a node -> tasks index."""

    def __init__(self, backend: StateBackend, run_id: str, writer: str,
                 clock: Callable[[], str]) -> None:
        self.backend = backend
        self.run_id = run_id
        self.writer = writer
        self.clock = clock
        self.lock = threading.RLock()
        self.cursor, self.seq = backend.position(run_id, writer)
        self.doc: dict[str, Any] = backend.load(run_id)
        self.by_node: dict[str, list[str]] = {}
        self.state_serial = 0
        """Incremented whenever the workflow state may have changed (cheap change detection)."""
        self._index()

    def _index(self) -> None:
        self.by_node = {}
        for tid, task in self.doc.get("tasks", {}).items():
            self.by_node.setdefault(task["node_id"], []).append(tid)

    def commit(self, ops: list[Op]) -> None:
        """Write `ops` as one diff (nothing when empty) and apply them to the local copy."""
        if not ops:
            return
        with self.lock:
            seq = self.seq + 1
            diff = Diff(run_id=self.run_id, writer=self.writer, seq=seq, ops=ops, ts=self.clock())
            if not self.backend.apply(diff):
                raise StateError(f"run {self.run_id}: writer '{self.writer}' seq {seq} was already"
                                 " used by another process writing as the same writer")
            self.seq = seq
            apply_ops(self.doc, copy.deepcopy(ops))
            for op in ops:
                path = op["path"]
                if path.startswith("/state"):
                    self.state_serial += 1
                if op["op"] == "add" and path.startswith("/tasks/") and path.count("/") == 2:
                    task = op["value"]
                    self.by_node.setdefault(task["node_id"], []).append(task["id"])

    def refresh(self) -> bool:
        """Catch up with other writers; True when one wrote something (the copy was reloaded)."""
        with self.lock:
            diffs, cursor = self.backend.changes_since(self.run_id, self.cursor)
            self.cursor = cursor
            if not any(d.writer != self.writer for d in diffs):
                return False
            self.doc = self.backend.load(self.run_id)
            self._index()
            self.state_serial += 1
            return True

    def reload(self) -> None:
        """Read the whole document again (after a compare-and-set lost to another process)."""
        with self.lock:
            self.cursor = self.backend.position(self.run_id, self.writer)[0]
            self.doc = self.backend.load(self.run_id)
            self._index()
            self.state_serial += 1

    def task(self, task_id: str) -> dict[str, Any]:
        """The live record of a task (read it under `lock`)."""
        task: dict[str, Any] = self.doc["tasks"][task_id]
        return task

    def node_outputs(self, node_id: str) -> dict[str, Any] | None:
        """A node's outputs once all its tasks are Completed, else None. A matrix node's output
        `x` is the list of its children's `x`, in the order the children were created (the
        items' order), null where a child did not set it: never one child's value."""
        tasks = self.doc.get("tasks", {})
        ids = self.by_node.get(node_id, [])
        if not ids:
            return None
        children: list[dict[str, Any]] = []
        matrix = False
        for tid in ids:
            task = tasks[tid]
            matrix = matrix or bool(task.get("master"))
            if task["status"] == TaskStatus.WONT_DO.value and not task.get("master"):
                continue
            if task["status"] != TaskStatus.COMPLETED.value:
                return None
            if not task.get("master"):
                children.append(task.get("outputs") or {})
        if not matrix:
            merged: dict[str, Any] = {}
            for outputs in children:
                merged.update(outputs)
            return merged
        names = list(dict.fromkeys(k for outputs in children for k in outputs))
        return {name: [outputs.get(name) for outputs in children] for name in names}


class UpstreamOutputs(Mapping[str, Mapping[str, Any]]):
    """`tasks` of an expression context: outputs of the completed ancestors of a node, looked
    up lazily so that building a context never walks every task of the run."""

    def __init__(self, store: RunStore, ancestors: frozenset[str]) -> None:
        self._store = store
        self._ancestors = ancestors

    def __getitem__(self, node_id: str) -> Mapping[str, Any]:
        if node_id not in self._ancestors:
            raise KeyError(node_id)
        outputs = self._store.node_outputs(node_id)
        if outputs is None:
            raise KeyError(node_id)
        return outputs

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._ancestors))

    def __len__(self) -> int:
        return len(self._ancestors)
