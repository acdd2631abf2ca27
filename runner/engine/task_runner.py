"""Run one task: open its runtime, run its steps in order, apply their outputs, retry, time out.

The executor marks the task Running (attempt 1) before handing it here; `TaskRunner.run` writes
the task's end (Completed or Failed, with `ended_at`, `step` and a one-line `error`) itself.
A failing step fails the task and the remaining steps are not run. A step whose `if:` is false
is skipped: recorded in the task's `skipped` list and announced (`StepSkipped`); a condition
that cannot be evaluated fails the task naming it. `retry: {attempts, backoff}`
runs the whole task again (attempt + 1, visible in the document) after waiting `backoff` on the
cancel event, so a cancel interrupts the wait. A node `timeout` bounds each attempt; a step
`timeout` bounds the step (the smaller one applies). A canceled task ends Failed with
`canceled: true` and an error saying where it was stopped (shown as Canceled).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from runner.document import Op, TaskStatus, pointer_escape, task_field_op, task_label
from runner.engine import events as ev
from runner.engine.codemod_step import (
    CodemodContext,
    node_needs_engine,
    run_codemod_step,
    run_shard_step,
    task_mounts,
)
from runner.engine.commit import checkpoint
from runner.engine.outputs import (
    OutputsError,
    OutputsFile,
    StateInput,
    entries_to_ops,
    parse_outputs,
)
from runner.engine.patches import PatchKeeper, patch_log_id
from runner.engine.runstore import RunStore, UpstreamOutputs
from runner.engine.state_schema import check_entries
from runner.engine.step_output import StepOutput
from runner.engine.steps import (
    INLINE_LIMIT,
    Planned,
    StepError,
    argv_for,
    expand,
    inline_argv,
    kind_config,
    render,
    task_env,
    task_runtime,
    template_outputs,
    with_inputs,
)
from runner.errors import (
    ConditionError,
    ExpressionError,
    RuntimeUnavailable,
    StateError,
    TooLarge,
)
from runner.paths import control_dir_under, ensure_dir, ledger_file_under
from runner.runtimes.base import Runtime, StepResult, StepSpec, TaskHandle, TaskSpec
from runner.secrets.masker import Masker
from runner.workflow.conditions import evaluate as evaluate_condition
from runner.workflow.conditions import parse as parse_condition
from runner.workflow.expressions import Context, resolve
from runner.workflow.model import Node, Workflow, parse_duration
from runner.workflow.params import secret_names

_CANCELED = "canceled"


@dataclass(frozen=True)
class Outcome:
    """How one attempt of a task ended."""

    ok: bool
    error: str | None = None
    step: int | None = None
    canceled: bool = False
    state_changed: bool = False


@dataclass(frozen=True)
class TaskSetup:
    """Everything a task runner needs that does not change during a run."""

    workflow: Workflow
    store: RunStore
    runtimes: Mapping[str, Runtime]
    workspace: Path
    control_root: Path
    host_env: Mapping[str, str]
    ancestors: Mapping[str, frozenset[str]]
    emit: Callable[[ev.Event], None]
    clock: Callable[[], str]
    cancel: threading.Event
    runner_id: str = "local"
    secrets: Mapping[str, str] = field(default_factory=dict)
    """`${{ secrets.NAME }}`: the run's secrets (never stored, masked in every output)."""
    secret_params: Mapping[str, str] = field(default_factory=dict)
    """Values of the params declared secret (the document holds `***` for them)."""
    masker: Masker = field(default_factory=Masker)
    """Built from every value of `secrets` and `secret_params`."""
    bundle_path: str | None = None
    """The workflow file's directory, given to steps as CODEMOD_PATH (None: not set)."""
    state_schema: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The declared state keys (`engine.state_schema`); empty: writes are not checked."""
    step_traverse: bool = False
    """Control dirs 0711: a step user other than ours reaches its files, cannot add any."""
    codemod_bin: Path | None = None
    """The Codemod CLI on this machine (None: codemod steps fail saying how to install it)."""
    patches: PatchKeeper | None = None
    """Keeps each task's change to the workspace as a patch (runs with codemod steps)."""


class TaskRunner:
    """Runs one task to its end and records that end."""

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

    # -- the task ----------------------------------------------------------------------------
    def run(self) -> Outcome:
        """All attempts of the task; writes its final status."""
        retry = self.node.retry
        attempts = retry.attempts if retry else 1
        backoff = parse_duration(retry.backoff) if retry and retry.backoff else 0.0
        state_changed = False
        first = self.attempt
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
            tries = self.attempt - first + 1
            if outcome.ok or outcome.canceled or tries >= attempts:
                break
            self.s.emit(ev.TaskRetrying(self.store.run_id, self.s.clock(), self.task_id,
                                        self.label, tries, attempts, outcome.error or "",
                                        backoff))
            if (backoff and self.s.cancel.wait(backoff)) or self.s.cancel.is_set():
                outcome = Outcome(False, "stopped while waiting to retry", outcome.step,
                                  canceled=True)
                break
            self.attempt += 1
            self.store.commit([task_field_op(self.task_id, "attempt", self.attempt),
                               task_field_op(self.task_id, "error", outcome.error)])
        self.keep_patch()
        self.finish(outcome)
        return Outcome(outcome.ok, outcome.error, outcome.step, outcome.canceled, state_changed)

    def keep_patch(self) -> None:
        """The task's change to the workspace, to its `<task>.patch` log (secrets masked)."""
        keeper = self.s.patches
        if keeper is None or (not self.shell and not self.changed):
            return
        try:
            text = keeper.take(None if self.shell else self.changed)
        except (StateError, OSError) as exc:  # the run goes on; the task's log says so
            self.note(f"the change of this task could not be kept as a patch: {exc}")
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
        self.s.emit(ev.TaskStatusChanged(self.store.run_id, now, self.task_id, self.node_id,
                                         self.label, status.value, TaskStatus.RUNNING.value,
                                         outcome.error, False, self.attempt,
                                         canceled=outcome.canceled))

    # -- one attempt -------------------------------------------------------------------------
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

    def attempt_once(self) -> Outcome:
        """Run the task's steps once through its runtime."""
        options = task_runtime(self.s.workflow, self.node)
        runtime = self.s.runtimes.get(options.type.value)
        if runtime is None:
            return Outcome(False, f"runtime '{options.type.value}' is not available on this"
                                  " runner")
        with self.store.lock:
            env, self.protected = task_env(self.node, self.node_index, self.matrix,
                                           self.context(), run_id=self.store.run_id,
                                           task_id=self.task_id)
            if self.store.task(self.task_id).get("skipped"):
                self.store.commit([task_field_op(self.task_id, "skipped", [])])
        self.skipped = []
        control = control_dir_under(self.s.control_root, self.store.run_id, self.task_id)
        shutil.rmtree(control, ignore_errors=True)
        ensure_dir(control.parent)  # every new level 0700, not only the last one
        control.mkdir(mode=0o700)
        if self.s.step_traverse:
            for path in (control.parent.parent, control.parent, control):
                os.chmod(path, 0o711)
        mounts = (task_mounts(self.s.codemod_bin, self.bundle, self.s.workspace)
                  if node_needs_engine(self.s.workflow, self.node) else [])
        spec = TaskSpec(run_id=self.store.run_id, task_id=self.task_id, node_id=self.node_id,
                        options=options, workspace=self.s.workspace, control_dir=control,
                        env=env, runner_id=self.s.runner_id,
                        ledger=ledger_file_under(self.s.control_root, self.store.run_id,
                                                 self.task_id),
                        mounts=mounts)
        deadline = None
        if self.node.timeout is not None:
            deadline = (parse_duration(self.node.timeout), time.monotonic())
        try:
            handle = runtime.open(spec)
            try:
                for text in handle.notes:
                    self.note(text)
                return self.steps(handle, control, deadline)
            finally:
                handle.close()
        finally:
            shutil.rmtree(control, ignore_errors=True)

    def steps(self, handle: TaskHandle, control: Path,
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
        ctx = with_inputs(self.context(), planned.inputs)
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
        self.skipped.append({"step": index, "name": name, "if": text})
        self.store.commit([{"op": "add", "path": f"/tasks/{self.task_id}/skipped",
                            "value": list(self.skipped)}])
        self.s.emit(ev.StepSkipped(self.store.run_id, self.s.clock(), self.task_id, self.label,
                                   index, name, text))
        return False

    def _next(self, planned_steps: Iterator[Planned], index: int) -> Planned | None:
        """The next step that runs (skipping those whose `if:` is false), or None."""
        while True:
            planned = next(planned_steps, None)
            if planned is None or planned.outputs_of is not None:
                return planned
            if self.should_run(planned, index + len(self.skipped)):
                return planned

    def _run_steps(self, handle: TaskHandle, control: Path, deadline: tuple[float, float] | None,
                   state_file: OutputsFile, task_file: OutputsFile) -> Outcome:
        state_changed = False
        index = 0

        def gate(planned: Planned) -> bool:  # a `use:` step's `if:` (store lock held)
            return self.should_run(planned, index + len(self.skipped))

        planned_steps = expand(self.s.workflow, self.node_index, self.context, gate)
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
                                    self.task_id), self._output_lines,
                            mask=self.s.masker.stream())
        while True:
            with self.store.lock:
                planned = self._next(planned_steps, index)
                if planned is None:
                    return Outcome(True, None, None, state_changed=state_changed)
                if planned.outputs_of is not None:
                    self._template_outputs(planned)
                    continue
                rendered = render(planned, index + len(self.skipped), self.context,
                                  self.protected)
                config = (kind_config(planned, self.context)
                          if planned.step.kind != "run" else None)
                state_input.refresh(self.store)
            step_no = index + len(self.skipped)
            timeout = parse_duration(planned.step.timeout) if planned.step.timeout else None
            node_cut = False
            if deadline is not None:
                remaining = deadline[0] - (time.monotonic() - deadline[1])
                if remaining <= 0:
                    return Outcome(False, f"timed out (node timeout {_secs(deadline[0])})",
                                   step_no)
                if timeout is None or remaining < timeout:
                    timeout, node_cut = remaining, True
            if config is not None:
                spec = StepSpec(step_no, self.s.masker.text(rendered.name), [],
                                {**rendered.env, **files_env}, timeout)
                if planned.step.kind == "shard":
                    result, wrote = self.shard_step(handle, control, planned, config, spec,
                                                    output)
                    state_changed = state_changed or wrote
                else:
                    result = self.codemod_step(handle, control, planned, config, spec, output)
                if not result.ok:
                    name = self.s.masker.text(rendered.name)
                    if result.reason == _CANCELED:
                        return Outcome(False, f"stopped during step '{name}'", step_no,
                                       canceled=True, state_changed=state_changed)
                    return Outcome(False, f"step '{name}' failed: {result.describe()}", step_no,
                                   state_changed=state_changed)
                failed = self.commit_checkpoint(planned, output, step_no, rendered.name)
                if failed is not None:
                    return failed
                index += 1
                continue
            # A script holding a secret never goes in argv (`ps` and `docker inspect` show it)
            # nor, for a shell script, on disk: see `secret_shell`.
            secret = self.s.masker.found_in(rendered.script)
            extra: dict[str, str] = {}
            argv = None if secret else inline_argv(rendered.script, rendered.shebang)
            if secret and not rendered.shebang:
                argv, extra = secret_shell(rendered.script)
            script = None
            if argv is None:
                script = control / f"step-{step_no}.sh"
                script.write_text(rendered.script)
                os.chmod(script, 0o755)
                argv = argv_for(handle.path_for(script), rendered.shebang)
            self.shell = True
            env = {**rendered.env, **files_env, **extra}
            name = self.s.masker.text(rendered.name)
            try:
                result = self.run_step(handle, StepSpec(step_no, name, argv, env, timeout),
                                       output)
            finally:
                if secret and script is not None:
                    script.unlink(missing_ok=True)
            if not result.ok:
                what = result.describe()
                if result.reason == "timeout" and node_cut and deadline is not None:
                    what = f"timed out (node timeout {_secs(deadline[0])})"
                if result.reason == _CANCELED:
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
            message = resolve(spec.message, with_inputs(self.context(), planned.inputs),
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
        values = template_outputs(planned, self.context())
        if not values:
            return
        # an output's value may hold a secret: masked before it reaches the document
        values = {k: self.s.masker.text(v) if isinstance(v, str) else v
                  for k, v in values.items()}
        ops: list[Op] = [{"op": "add", "path": f"/tasks/{self.task_id}/outputs/"
                                               f"{pointer_escape(k)}", "value": v}
                         for k, v in values.items()]
        self.store.commit(ops)

    def note(self, text: str) -> None:
        """A line of Ferry's own in the task's log and output (`ferry: ...`), masked."""
        line = "ferry: " + self.s.masker.text(text)
        self.store.backend.append_log(self.store.run_id, self.task_id, (line + "\n").encode())
        self._output_lines([line])

    def _output_lines(self, texts: list[str]) -> None:
        # Lines of one chunk arrived together: one timestamp for them all.
        ts = self.s.clock()
        run_id, task_id, label, emit = self.store.run_id, self.task_id, self.label, self.s.emit
        for text in texts:
            emit(ev.OutputLine(run_id, ts, task_id, label, text))

    def _codemod_context(self, handle: TaskHandle, control: Path, planned: Planned,
                         output: StepOutput, announce: bool) -> CodemodContext:
        with self.store.lock:
            params = dict(self.context().params)
            dry_run = bool(self.store.doc.get("dry_run"))

        def run(step: StepSpec, sink: Callable[[bytes], None],
                cancel: threading.Event) -> StepResult:
            if announce:
                return self.run_step(handle, step, output, cancel, sink)
            return handle.run_step(step, sink, cancel)

        return CodemodContext(
            binary=self.s.codemod_bin, handle=handle, control=control,
            workspace=self.s.workspace, bundle=self.bundle, node=self.node, matrix=self.matrix,
            params={**params, **planned.inputs}, dry_run=dry_run, cancel=self.s.cancel,
            run_step=run)

    def codemod_step(self, handle: TaskHandle, control: Path, planned: Planned,
                     config: dict[str, Any], spec: StepSpec, output: StepOutput) -> StepResult:
        """Run a `js-ast-grep`, `ast-grep` or `codemod` step through the Codemod CLI."""
        ctx = self._codemod_context(handle, control, planned, output, announce=True)
        done = run_codemod_step(ctx, planned.step, config, spec, output)
        self.changed += [p for p in done.changed if p not in self.changed]
        return done.result

    def shard_step(self, handle: TaskHandle, control: Path, planned: Planned,
                   config: dict[str, Any], spec: StepSpec,
                   output: StepOutput) -> tuple[StepResult, bool]:
        """Run a `shard` step and write its shards to state; (result, state written)."""
        ctx = self._codemod_context(handle, control, planned, output, announce=False)
        key = str(config.get("output_state"))
        with self.store.lock:
            previous = (self.store.doc.get("state") or {}).get(key)
        run_id = self.store.run_id
        self.s.emit(ev.StepStarted(run_id, self.s.clock(), self.task_id, self.label,
                                   spec.index, spec.name))
        done = run_shard_step(ctx, planned.step, config, spec, output,
                              previous if isinstance(previous, list) else [])
        output.flush()
        result = done.result
        self.s.emit(ev.StepFinished(run_id, self.s.clock(), self.task_id, self.label,
                                    spec.index, spec.name, result.ok, result.describe(),
                                    result.duration))
        if not result.ok or done.shards is None:
            return result, False
        with self.store.lock:
            self.store.commit([{"op": "add", "path": f"/state/{pointer_escape(key)}",
                                "value": done.shards}])
        return result, True

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
        with self.store.lock:
            ops: list[Op] = entries_to_ops(state_entries, self.store.doc.get("state") or {},
                                           "/state", "STATE_OUTPUTS")
            outputs = self.store.task(self.task_id).get("outputs") or {}
            ops += entries_to_ops(task_entries, outputs, f"/tasks/{self.task_id}/outputs",
                                  "TASK_OUTPUTS")
            ops.append(task_field_op(self.task_id, "step", index))
            self.store.commit(ops)
        return bool(state_entries)


SCRIPT_VAR = "FERRY_STEP_SCRIPT"
_FROM_ENV = f'set -- "${SCRIPT_VAR}"; unset {SCRIPT_VAR}; eval "set --\n$1"'


def secret_shell(script: str) -> tuple[list[str] | None, dict[str, str]]:
    """A shell script holding a secret: given to `sh -e -c` through the environment, which the
    shell reads and unsets before running it (with no positional parameters, as inline), so it
    is neither in argv nor on disk. (None, {}) when it cannot be (a NUL byte, or too large for
    one environment string): it then goes to the control dir's file, removed after the step."""
    if "\0" in script or len(script.encode("utf-8", "surrogateescape")) > INLINE_LIMIT:
        return None, {}
    return ["/bin/sh", "-e", "-c", _FROM_ENV], {SCRIPT_VAR: script}


def _secs(seconds: float) -> str:
    return f"{seconds:g}s"
