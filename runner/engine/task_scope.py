"""One task of a run as its steps see it: its node, its expression context, its log and events."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.document import task_label
from runner.engine import events as ev
from runner.engine.runstore import UpstreamOutputs
from runner.engine.step_output import StepOutput
from runner.engine.task_setup import TaskSetup
from runner.runtimes.base import StepResult, StepSpec, TaskHandle
from runner.workflow.expressions import Context
from runner.workflow.model import Node
from runner.workflow.params import secret_names


class TaskScope:
    """The task a `TaskRunner` runs: read once from the document, shared by its attempts."""

    def __init__(self, setup: TaskSetup, task_id: str) -> None:
        self.s = setup
        self.store = setup.store
        self.task_id = task_id
        with self.store.lock:
            task = self.store.task(task_id)
            self.node_id: str = task["node_id"]
            self.matrix: dict[str, Any] | None = task.get("matrix")
            self.attempt: int = int(task.get("attempt") or 1)
            self.label = task_label(self.store.doc, task)
        self.node_index = next(i for i, n in enumerate(setup.workflow.nodes)
                               if n.id == self.node_id)
        self.node: Node = setup.workflow.nodes[self.node_index]
        self.secret = secret_names(setup.workflow)
        schema = setup.workflow.params.schema_ if setup.workflow.params else {}
        self.secret_defaults = {name: prop.default for name, prop in schema.items()
                                if name in self.secret and prop.default is not None}
        self.protected: frozenset[str] = frozenset()
        """Env names of the task no step env may set (matrix values, ids, files)."""
        self.skipped: list[dict[str, Any]] = []
        """The steps of this attempt whose `if:` was false."""
        self.bundle = Path(setup.bundle_path or setup.workspace)
        """The workflow file's directory: the codemod package of codemod steps."""
        self.changed: list[str] = []
        """Files this task's codemod steps changed (relative to the workspace)."""
        self.shell = False
        """A shell step or a commit checkpoint ran: any file may have changed."""

    def context(self) -> Context:
        """The expression context now (call holding the store lock)."""
        doc = self.store.doc
        ancestors = self.s.ancestors.get(self.node_id, frozenset())
        params = doc.get("params") or {}
        if self.secret or self.s.secret_params:  # the document holds masks: the values, or
            # the workflow's default, or nothing (never the mask)
            params = {k: v for k, v in params.items() if k not in self.secret}
            params.update(self.secret_defaults)
            params.update(self.s.secret_params)
        return Context(matrix=self.matrix or {}, params=params,
                       env=self.s.host_env, state=doc.get("state") or {},
                       tasks=UpstreamOutputs(self.store, ancestors), secrets=self.s.secrets)

    def note(self, text: str) -> None:
        """A line of Ferry's own in the task's log and output (`ferry: ...`), masked."""
        line = "ferry: " + self.s.masker.text(text)
        self.store.backend.append_log(self.store.run_id, self.task_id, (line + "\n").encode())
        self.output_lines([line])

    def output_lines(self, texts: list[str]) -> None:
        """Announce whole lines of the task's output (`OutputLine` events)."""
        # Lines of one chunk arrived together: one timestamp for them all.
        ts = self.s.clock()
        run_id, task_id, label, emit = self.store.run_id, self.task_id, self.label, self.s.emit
        for text in texts:
            emit(ev.OutputLine(run_id, ts, task_id, label, text))

    def run_step(self, handle: TaskHandle, spec: StepSpec, output: StepOutput,
                 cancel: threading.Event | None = None,
                 sink: Callable[[bytes], None] | None = None) -> StepResult:
        """Run one step, streaming its output to the log and to line events (through `sink`
        when given: a parser in front of the log, e.g. the Codemod CLI's events)."""
        run_id = self.store.run_id
        self.s.emit(ev.StepStarted(run_id, self.s.clock(), self.task_id, self.label,
                                   spec.index, spec.name))
        result = handle.run_step(spec, sink or output, cancel or self.s.cancel)
        output.flush()
        self.s.emit(ev.StepFinished(run_id, self.s.clock(), self.task_id, self.label, spec.index,
                                    spec.name, result.ok, result.describe(), result.duration))
        return result
