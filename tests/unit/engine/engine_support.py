"""Test support for the engine: an in-memory StateBackend and helpers to run workflows."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from runner.diff import Diff, apply_ops
from runner.engine.events import CollectingSink
from runner.engine.executor import Executor, ExecutorSettings
from runner.errors import SeqGap, UnknownRun
from runner.paths import Paths
from runner.runtimes.direct import DirectRuntime
from runner.state.backend import RunSummary
from runner.workflow.model import Workflow

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "butterflow"


class MemoryBackend:
    """A `StateBackend` in memory: JSON round-trips like a real store, same seq rules."""

    shared = False

    def announce(self, writer: str) -> None:
        """One process: nothing to announce."""

    def alive(self, writer: str) -> bool:
        """No other process."""
        return False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.docs: dict[str, dict[str, Any]] = {}
        self.diffs: dict[str, list[Diff]] = {}
        self.logs: dict[tuple[str, str], bytearray] = {}

    def create_run(self, doc: dict[str, Any]) -> None:
        with self._lock:
            self.docs[doc["id"]] = json.loads(json.dumps(doc))
            self.diffs[doc["id"]] = []

    def load(self, run_id: str) -> dict[str, Any]:
        with self._lock:
            if run_id not in self.docs:
                raise UnknownRun(run_id)
            loaded: dict[str, Any] = json.loads(json.dumps(self.docs[run_id]))
            return loaded

    def apply(self, diff: Diff) -> bool:
        with self._lock:
            history = self.diffs[diff.run_id]
            last = max((d.seq for d in history if d.writer == diff.writer), default=0)
            if diff.seq <= last:
                return False
            if diff.seq != last + 1:
                raise SeqGap(writer=diff.writer, got=diff.seq, expected=last + 1)
            ops = json.loads(json.dumps(diff.ops))
            candidate = json.loads(json.dumps(self.docs[diff.run_id]))
            apply_ops(candidate, ops)
            self.docs[diff.run_id] = candidate
            history.append(diff)
            return True

    def changes_since(self, run_id: str, cursor: int) -> tuple[list[Diff], int]:
        with self._lock:
            history = self.diffs[run_id]
            return list(history[cursor:]), len(history)

    def position(self, run_id: str, writer: str) -> tuple[int, int]:
        with self._lock:
            history = self.diffs[run_id]
            return len(history), max((d.seq for d in history if d.writer == writer), default=0)

    def history(self, run_id: str) -> list[Diff]:
        return self.changes_since(run_id, 0)[0]

    def list_runs(self, limit: int = 20, status: str | None = None) -> list[RunSummary]:
        return []

    def append_log(self, run_id: str, task_id: str, data: bytes) -> None:
        with self._lock:
            self.logs.setdefault((run_id, task_id), bytearray()).extend(data)

    def read_log(self, run_id: str, task_id: str, offset: int = 0) -> bytes:
        with self._lock:
            return bytes(self.logs.get((run_id, task_id), b""))[offset:]


def workflow(text_or_path: str | Path | Mapping[str, Any]) -> Workflow:
    """A Workflow from YAML text, a file path or a dict."""
    if isinstance(text_or_path, Path):
        data = yaml.safe_load(text_or_path.read_text())
    elif isinstance(text_or_path, str):
        data = yaml.safe_load(text_or_path)
    else:
        data = dict(text_or_path)
    return Workflow.model_validate(data)


def make_executor(tmp_path: Path, backend: Any = None, *, writer: str = "local",
                  max_parallel: int = 4, env: Mapping[str, str] | None = None
                  ) -> tuple[Executor, Any, CollectingSink]:
    """An executor on the real DirectRuntime, a workspace under tmp_path, collecting events."""
    backend = backend if backend is not None else MemoryBackend()
    sink = CollectingSink()
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    host_env = dict(os.environ) if env is None else dict(env)
    settings = ExecutorSettings(writer=writer, max_parallel=max_parallel, workspace=workspace,
                                control_root=Paths.under(tmp_path / "home").work_dir,
                                env=host_env)
    executor = Executor(backend, {"direct": DirectRuntime(host_env, grace_seconds=1.0)},
                        settings, events=sink)
    return executor, backend, sink


def by_node(doc: Mapping[str, Any], node_id: str) -> list[dict[str, Any]]:
    """The tasks of one node (masters first)."""
    tasks = [t for t in doc["tasks"].values() if t["node_id"] == node_id]
    return sorted(tasks, key=lambda t: not t.get("master"))


def one(doc: Mapping[str, Any], node_id: str) -> dict[str, Any]:
    """The only task of a regular node."""
    tasks = by_node(doc, node_id)
    assert len(tasks) == 1, tasks
    return tasks[0]
