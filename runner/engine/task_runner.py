"""Run one task: open its runtime, run its steps in order, apply their outputs, retry, time out.

The executor marks the task Running (attempt 1) before handing it here; `TaskRunner.run` writes
the task's end (Completed or Failed, with `ended_at`, `step` and a one-line `error`) itself.
A failing step fails the task and the remaining steps are not run (`step_loop`). A step whose
`if:` is false is skipped: recorded in the task's `skipped` list and announced (`StepSkipped`); a
condition that cannot be evaluated fails the task naming it. `retry: {attempts, backoff}`
runs the whole task again (attempt + 1, visible in the document) after waiting `backoff` on the
cancel event, so a cancel interrupts the wait. A node `timeout` bounds each attempt; a step
`timeout` bounds the step (the smaller one applies). A canceled task ends Failed with
`canceled: true` and an error saying where it was stopped (shown as Canceled).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace

from runner.document import TaskStatus, task_field_op
from runner.engine import events as ev
from runner.engine.codemod_step import node_needs_engine, task_mounts
from runner.engine.outputs import OutputsError
from runner.engine.patches import patch_log_id
from runner.engine.step_loop import StepLoop
from runner.engine.steps import StepError, task_env, task_runtime
from runner.engine.task_scope import TaskScope
from runner.engine.task_setup import Outcome, TaskSetup
from runner.errors import (
    ConditionError,
    ExpressionError,
    RuntimeUnavailable,
    StateError,
    TooLarge,
)
from runner.paths import control_dir_under, ensure_dir, ledger_file_under
from runner.runtimes.base import TaskSpec
from runner.workflow.model import parse_duration


class TaskRunner:
    """Runs one task to its end and records that end."""

    def __init__(self, setup: TaskSetup, task_id: str) -> None:
        self.s = setup
        self.store = setup.store
        self.task_id = task_id
        self.task = TaskScope(setup, task_id)

    # -- the task ----------------------------------------------------------------------------
    def run(self) -> Outcome:
        """All attempts of the task; writes its final status."""
        t = self.task
        retry = t.node.retry
        attempts = retry.attempts if retry else 1
        backoff = parse_duration(retry.backoff) if retry and retry.backoff else 0.0
        state_changed = False
        first = t.attempt
        while True:
            try:
                outcome = self.attempt_once()
            except (ExpressionError, ConditionError, StepError, OutputsError,
                    RuntimeUnavailable, TooLarge) as exc:
                # (TooLarge: a change over what a control plane takes; it was not written)
                outcome = Outcome(False, str(exc))
            except OSError as exc:  # control dir or script file: the task fails, not the run
                outcome = Outcome(False, f"cannot prepare the task's files: {exc}")
            if outcome.error:
                outcome = replace(outcome, error=self.s.masker.text(outcome.error))
            state_changed = state_changed or outcome.state_changed
            # counted from this run of the task: a re-run (--retry-failed) gets every attempt
            tries = t.attempt - first + 1
            if outcome.ok or outcome.canceled or tries >= attempts:
                break
            self.s.emit(ev.TaskRetrying(self.store.run_id, self.s.clock(), self.task_id,
                                        t.label, tries, attempts, outcome.error or "",
                                        backoff))
            if (backoff and self.s.cancel.wait(backoff)) or self.s.cancel.is_set():
                outcome = Outcome(False, "stopped while waiting to retry", outcome.step,
                                  canceled=True)
                break
            t.attempt += 1
            self.store.commit([task_field_op(self.task_id, "attempt", t.attempt),
                               task_field_op(self.task_id, "error", outcome.error)])
        self.keep_patch()
        self.finish(outcome)
        return Outcome(outcome.ok, outcome.error, outcome.step, outcome.canceled, state_changed)

    def keep_patch(self) -> None:
        """The task's change to the workspace, to its `<task>.patch` log (secrets masked)."""
        keeper, t = self.s.patches, self.task
        if keeper is None or (not t.shell and not t.changed):
            return
        try:
            text = keeper.take(None if t.shell else t.changed)
        except (StateError, OSError) as exc:  # the run goes on; the task's log says so
            t.note(f"the change of this task could not be kept as a patch: {exc}")
            return
        if text:
            data = self.s.masker.text(text).encode("utf-8", "surrogateescape")
            self.store.backend.append_log(self.store.run_id, patch_log_id(self.task_id), data)

    def finish(self, outcome: Outcome) -> None:
        """Record the task's end and announce it."""
        status = TaskStatus.COMPLETED if outcome.ok else TaskStatus.FAILED
        now = self.s.clock()
        ops = [task_field_op(self.task_id, "status", status.value),
               task_field_op(self.task_id, "ended_at", now),
               task_field_op(self.task_id, "step", outcome.step),
               task_field_op(self.task_id, "error", outcome.error)]
        if outcome.canceled:  # Failed for the scheduler; shown as Canceled. `add`: documents
            # written before the field existed have no member to replace
            ops.append({"op": "add", "path": f"/tasks/{self.task_id}/canceled", "value": True})
        self.store.commit(ops)
        t = self.task
        self.s.emit(ev.TaskStatusChanged(self.store.run_id, now, self.task_id, t.node_id,
                                         t.label, status.value, TaskStatus.RUNNING.value,
                                         outcome.error, False, t.attempt,
                                         canceled=outcome.canceled))

    # -- one attempt -------------------------------------------------------------------------
    def attempt_once(self) -> Outcome:
        """Run the task's steps once through its runtime."""
        t = self.task
        options = task_runtime(self.s.workflow, t.node)
        runtime = self.s.runtimes.get(options.type.value)
        if runtime is None:
            return Outcome(False, f"runtime '{options.type.value}' is not available on this"
                                  " runner")
        with self.store.lock:
            env, t.protected = task_env(t.node, t.node_index, t.matrix, t.context(),
                                        run_id=self.store.run_id, task_id=self.task_id)
            if self.store.task(self.task_id).get("skipped"):
                self.store.commit([task_field_op(self.task_id, "skipped", [])])
        t.skipped = []
        control = control_dir_under(self.s.control_root, self.store.run_id, self.task_id)
        shutil.rmtree(control, ignore_errors=True)
        ensure_dir(control.parent)  # every new level 0700, not only the last one
        control.mkdir(mode=0o700)
        if self.s.step_traverse:
            for path in (control.parent.parent, control.parent, control):
                os.chmod(path, 0o711)
        mounts = (task_mounts(self.s.codemod_bin, t.bundle, self.s.workspace)
                  if node_needs_engine(self.s.workflow, t.node) else [])
        spec = TaskSpec(run_id=self.store.run_id, task_id=self.task_id, node_id=t.node_id,
                        options=options, workspace=self.s.workspace, control_dir=control,
                        env=env, runner_id=self.s.runner_id,
                        ledger=ledger_file_under(self.s.control_root, self.store.run_id,
                                                 self.task_id),
                        mounts=mounts)
        deadline = None
        if t.node.timeout is not None:
            deadline = (parse_duration(t.node.timeout), time.monotonic())
        try:
            handle = runtime.open(spec)
            try:
                for text in handle.notes:
                    t.note(text)
                return StepLoop(t).run(handle, control, deadline)
            finally:
                handle.close()
        finally:
            shutil.rmtree(control, ignore_errors=True)
