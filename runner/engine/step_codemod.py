"""A task's codemod and shard steps: the Codemod CLI run through the task's handle."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.document import pointer_escape
from runner.engine import events as ev
from runner.engine.codemod_step import CodemodContext, run_codemod_step, run_shard_step
from runner.engine.step_output import StepOutput
from runner.engine.steps import Planned
from runner.engine.task_scope import TaskScope
from runner.runtimes.base import StepResult, StepSpec, TaskHandle


def _codemod_context(task: TaskScope, handle: TaskHandle, control: Path, planned: Planned,
                     output: StepOutput, announce: bool) -> CodemodContext:
    with task.store.lock:
        params = dict(task.context().params)
        dry_run = bool(task.store.doc.get("dry_run"))

    def run(step: StepSpec, sink: Callable[[bytes], None],
            cancel: threading.Event) -> StepResult:
        if announce:
            return task.run_step(handle, step, output, cancel, sink)
        return handle.run_step(step, sink, cancel)

    s = task.s
    return CodemodContext(
        binary=s.codemod_bin, handle=handle, control=control,
        workspace=s.workspace, bundle=task.bundle, node=task.node, matrix=task.matrix,
        params={**params, **planned.inputs}, dry_run=dry_run, cancel=s.cancel,
        run_step=run)


def codemod_step(task: TaskScope, handle: TaskHandle, control: Path, planned: Planned,
                 config: dict[str, Any], spec: StepSpec, output: StepOutput) -> StepResult:
    """Run a `js-ast-grep`, `ast-grep` or `codemod` step through the Codemod CLI."""
    ctx = _codemod_context(task, handle, control, planned, output, announce=True)
    done = run_codemod_step(ctx, planned.step, config, spec, output)
    task.changed += [p for p in done.changed if p not in task.changed]
    return done.result


def shard_step(task: TaskScope, handle: TaskHandle, control: Path, planned: Planned,
               config: dict[str, Any], spec: StepSpec,
               output: StepOutput) -> tuple[StepResult, bool]:
    """Run a `shard` step and write its shards to state; (result, state written)."""
    ctx = _codemod_context(task, handle, control, planned, output, announce=False)
    key = str(config.get("output_state"))
    store, s = task.store, task.s
    with store.lock:
        previous = (store.doc.get("state") or {}).get(key)
    run_id = store.run_id
    s.emit(ev.StepStarted(run_id, s.clock(), task.task_id, task.label, spec.index, spec.name))
    done = run_shard_step(ctx, planned.step, config, spec, output,
                          previous if isinstance(previous, list) else [])
    output.flush()
    result = done.result
    s.emit(ev.StepFinished(run_id, s.clock(), task.task_id, task.label, spec.index, spec.name,
                           result.ok, result.describe(), result.duration))
    if not result.ok or done.shards is None:
        return result, False
    with store.lock:
        store.commit([{"op": "add", "path": f"/state/{pointer_escape(key)}",
                       "value": done.shards}])
    return result, True
