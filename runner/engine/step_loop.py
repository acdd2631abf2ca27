"""One attempt's steps in order: `if:` conditions, templates' outputs, timeouts, each step's
outputs files applied as one diff, `commit:` checkpoints; the first failing step ends it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

from runner.document import Op, pointer_escape, task_field_op
from runner.engine import events as ev
from runner.engine.commit import checkpoint
from runner.engine.outputs import (
    OutputsError,
    OutputsFile,
    StateInput,
    entries_to_ops,
    parse_outputs,
)
from runner.engine.state_schema import check_entries
from runner.engine.step_codemod import codemod_step, shard_step
from runner.engine.step_output import StepOutput
from runner.engine.step_shell import run_shell_step
from runner.engine.steps import (
    Planned,
    expand,
    kind_config,
    render,
    template_outputs,
    with_inputs,
)
from runner.engine.task_scope import TaskScope
from runner.engine.task_setup import Outcome
from runner.errors import ConditionError, TooLarge
from runner.runtimes.base import StepSpec, TaskHandle
from runner.workflow.conditions import evaluate as evaluate_condition
from runner.workflow.conditions import parse as parse_condition
from runner.workflow.expressions import resolve
from runner.workflow.model import parse_duration

CANCELED = "canceled"
"""A `StepResult.reason`: the step was stopped by the task's cancel."""


class StepLoop:
    """Runs the steps of one attempt of a task through its open handle."""

    def __init__(self, task: TaskScope) -> None:
        self.t = task
        self.s = task.s
        self.store = task.store

    def run(self, handle: TaskHandle, control: Path,
            deadline: tuple[float, float] | None) -> Outcome:
        """Run the steps in order; stop at the first that fails."""
        # One pair of outputs files per attempt, emptied after each step that wrote to them.
        with OutputsFile(control / "state-outputs", "STATE_OUTPUTS") as state_file, \
                OutputsFile(control / "task-outputs", "TASK_OUTPUTS") as task_file:
            return self._run_steps(handle, control, deadline, state_file, task_file)

    def should_run(self, planned: Planned, index: int) -> bool:
        """Evaluate the step's `if:` (call holding the store lock); a false one is recorded as
        skipped and announced. `ConditionError` when it cannot be evaluated."""
        text = planned.step.if_
        if text is None:
            return True
        t = self.t
        ctx = with_inputs(t.context(), planned.inputs)
        try:
            if evaluate_condition(parse_condition(text), ctx):
                return True
        except ConditionError as exc:
            raise ConditionError(text, f"{exc.reason} (step "
                                       f"'{planned.step.display_name(index)}', "
                                       f"{planned.where}.if)") from None
        name = planned.step.display_name(index)
        if planned.caller and planned.step.use is None:
            name = f"{planned.caller} / {name}"
        name = self.s.masker.text(name)
        t.skipped.append({"step": index, "name": name, "if": text})
        self.store.commit([{"op": "add", "path": f"/tasks/{t.task_id}/skipped",
                            "value": list(t.skipped)}])
        self.s.emit(ev.StepSkipped(self.store.run_id, self.s.clock(), t.task_id, t.label,
                                   index, name, text))
        return False

    def _next(self, planned_steps: Iterator[Planned], index: int) -> Planned | None:
        """The next step that runs (skipping those whose `if:` is false), or None."""
        while True:
            planned = next(planned_steps, None)
            if planned is None or planned.outputs_of is not None:
                return planned
            if self.should_run(planned, index + len(self.t.skipped)):
                return planned

    def _run_steps(self, handle: TaskHandle, control: Path, deadline: tuple[float, float] | None,
                   state_file: OutputsFile, task_file: OutputsFile) -> Outcome:
        t = self.t
        state_changed = False
        index = 0

        def gate(planned: Planned) -> bool:  # a `use:` step's `if:` (store lock held)
            return self.should_run(planned, index + len(t.skipped))

        planned_steps = expand(self.s.workflow, t.node_index, t.context, gate)
        state_input = StateInput(control / "state-input")
        files_env = {"STATE_OUTPUTS": handle.path_for(state_file.path),
                     "TASK_OUTPUTS": handle.path_for(task_file.path),
                     "CODEMOD_STATE": handle.path_for(state_input.path)}
        if self.s.bundle_path:  # the workflow's directory, as the step's runtime sees it
            try:
                files_env["CODEMOD_PATH"] = handle.path_for(Path(self.s.bundle_path))
            except ValueError:  # outside the workspace: not in a container's view
                files_env["CODEMOD_PATH"] = self.s.bundle_path
        # Secrets are masked before the bytes go anywhere: log, journal, server, events.
        output = StepOutput(partial(self.store.backend.append_log, self.store.run_id,
                                    t.task_id), t.output_lines,
                            mask=self.s.masker.stream())
        while True:
            with self.store.lock:
                planned = self._next(planned_steps, index)
                if planned is None:
                    return Outcome(True, None, None, state_changed=state_changed)
                if planned.outputs_of is not None:
                    self._template_outputs(planned)
                    continue
                rendered = render(planned, index + len(t.skipped), t.context, t.protected)
                config = (kind_config(planned, t.context)
                          if planned.step.kind != "run" else None)
                state_input.refresh(self.store)
            step_no = index + len(t.skipped)
            timeout = parse_duration(planned.step.timeout) if planned.step.timeout else None
            node_cut = False
            if deadline is not None:
                remaining = deadline[0] - (time.monotonic() - deadline[1])
                if remaining <= 0:
                    return Outcome(False, f"timed out (node timeout {_secs(deadline[0])})",
                                   step_no)
                if timeout is None or remaining < timeout:
                    timeout, node_cut = remaining, True
            name = self.s.masker.text(rendered.name)
            if config is not None:
                spec = StepSpec(step_no, name, [], {**rendered.env, **files_env}, timeout)
                if planned.step.kind == "shard":
                    result, wrote = shard_step(t, handle, control, planned, config, spec, output)
                    state_changed = state_changed or wrote
                else:
                    result = codemod_step(t, handle, control, planned, config, spec, output)
                if not result.ok:
                    if result.reason == CANCELED:
                        return Outcome(False, f"stopped during step '{name}'", step_no,
                                       canceled=True, state_changed=state_changed)
                    return Outcome(False, f"step '{name}' failed: {result.describe()}", step_no,
                                   state_changed=state_changed)
                failed = self.commit_checkpoint(planned, output, step_no, rendered.name)
                if failed is not None:
                    return failed
                index += 1
                continue
            result = run_shell_step(t, handle, control, rendered, step_no, files_env, timeout,
                                    output)
            if not result.ok:
                what = result.describe()
                if result.reason == "timeout" and node_cut and deadline is not None:
                    what = f"timed out (node timeout {_secs(deadline[0])})"
                if result.reason == CANCELED:
                    return Outcome(False, f"stopped during step '{name}'", step_no,
                                   canceled=True, state_changed=state_changed)
                return Outcome(False, f"step '{name}' failed: {what}", step_no,
                               state_changed=state_changed)
            try:
                state_changed = self.apply_outputs(state_file, task_file, step_no) \
                    or state_changed
            except (OutputsError, TooLarge) as exc:  # this step wrote it: the step fails
                return Outcome(False, f"step '{name}' failed: {exc}", step_no,
                               state_changed=state_changed)
            failed = self.commit_checkpoint(planned, output, step_no, rendered.name)
            if failed is not None:
                return replace(failed, state_changed=state_changed)
            index += 1

    def commit_checkpoint(self, planned: Planned, output: StepOutput, step_no: int,
                          name: str) -> Outcome | None:
        """The step's `commit:` checkpoint, if it has one; a failed Outcome when it fails."""
        spec = planned.step.commit
        if spec is None:
            return None
        with self.store.lock:
            message = resolve(spec.message, with_inputs(self.t.context(), planned.inputs),
                              f"{planned.where}.commit.message")
        done = checkpoint(self.s.workspace, message, spec.add, spec.allow_empty,
                          self.s.host_env)
        output(done.line.encode("utf-8", "replace") + b"\n")
        output.flush()
        if done.ok:
            return None
        return Outcome(False, f"step '{self.s.masker.text(name)}' failed: {done.line}", step_no)

    def _template_outputs(self, planned: Planned) -> None:
        """Evaluate a template's `outputs:` into the task's outputs (store lock held)."""
        values = template_outputs(planned, self.t.context())
        if not values:
            return
        # an output's value may hold a secret: masked before it reaches the document
        values = {k: self.s.masker.text(v) if isinstance(v, str) else v
                  for k, v in values.items()}
        ops: list[Op] = [{"op": "add", "path": f"/tasks/{self.t.task_id}/outputs/"
                                               f"{pointer_escape(k)}", "value": v}
                         for k, v in values.items()]
        self.store.commit(ops)

    def apply_outputs(self, state_file: OutputsFile, task_file: OutputsFile, index: int) -> bool:
        """Apply what the step wrote to $STATE_OUTPUTS / $TASK_OUTPUTS as one diff (none when it
        wrote nothing) and empty the files for the next step; True when the state changed."""
        # A secret written to the outputs is masked there too: it never reaches the document.
        state_text = self.s.masker.text(state_file.take())
        task_text = self.s.masker.text(task_file.take())
        if not state_text.strip() and not task_text.strip():
            return False
        source = f"step {index + 1} STATE_OUTPUTS"
        state_entries = check_entries(parse_outputs(state_text, source), self.s.state_schema,
                                      source)
        task_entries = parse_outputs(task_text, f"step {index + 1} TASK_OUTPUTS")
        task_id = self.t.task_id
        with self.store.lock:
            ops: list[Op] = entries_to_ops(state_entries, self.store.doc.get("state") or {},
                                           "/state", "STATE_OUTPUTS")
            outputs = self.store.task(task_id).get("outputs") or {}
            ops += entries_to_ops(task_entries, outputs, f"/tasks/{task_id}/outputs",
                                  "TASK_OUTPUTS")
            ops.append(task_field_op(task_id, "step", index))
            self.store.commit(ops)
        return bool(state_entries)


def _secs(seconds: float) -> str:
    return f"{seconds:g}s"
