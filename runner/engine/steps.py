"""Step composition: expand templates, resolve `${{ }}` in each step, build its script and env.

A node's steps are expanded lazily, one at a time, because a step may read state that the step
before it wrote: `expand(workflow, node_index, ctx_for, gate)` yields `Planned` steps, resolving
a `use:` step's inputs in the caller's context when the expansion reaches it (then the
template's defaults; a required input with no value fails the task). A `use:` step with an
`if:` asks `gate` first (False: the template is skipped). After a template's steps, a `Planned`
with `outputs_of` set marks where the template's `outputs:` are evaluated. `render(planned, i,
ctx_for)` resolves a step's `run`, `env` and `name`. Inside a template `${{inputs.x}}` reads its
inputs and, as in Butterflow, `${{params.x}}` sees the inputs merged over the run params.

Environment of a step, later wins (upstream's order, extended to what upstream ignores): node
env; template env; the `use:` step's env; the step's env; then what no step may override:
matrix values (strings plain, other values JSON), the run's ids (FERRY_RUN_ID, FERRY_TASK_ID,
FERRY_NODE_ID, CODEMOD_TASK_ID, CODEMOD_WORKFLOW_RUN_ID), CODEMOD_PATH (the workflow's
directory) and the per-step files STATE_OUTPUTS, TASK_OUTPUTS, CODEMOD_STATE. A `run` starting
with `#!` (after leading blank lines) is executed as its own interpreter script, else with
`/bin/sh -e`: given inline (`sh -e -c TEXT`) when it is small enough for one argument, else from
a script file (`inline_argv` says which).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from runner.errors import ExpressionError, FerryError
from runner.workflow.expressions import Context, contains, resolve, resolve_value
from runner.workflow.model import Node, Step, Template, Workflow
from runner.workflow.model import Runtime as RuntimeOptions
from runner.workflow.spec import (
    CODEMOD_STEP_KINDS,
    UNSUPPORTED_STEP_KINDS,
    unsupported_kind_message,
)


class StepError(FerryError):
    """A step cannot be composed: missing template input, unsupported step kind."""


@dataclass(frozen=True)
class Planned:
    """One step to run after template expansion, before variable resolution."""

    step: Step
    where: str
    """Location for error messages, e.g. `nodes[1].steps[0]` or `templates[0].steps[2]`."""
    inputs: Mapping[str, Any] = field(default_factory=dict)
    template_env: Mapping[str, str] = field(default_factory=dict)
    caller: str | None = None
    """The `use:` step's display name when this step comes from a template."""
    outputs_of: Template | None = None
    """Set on the marker that follows a template's steps: evaluate its `outputs` now."""


@dataclass(frozen=True)
class Rendered:
    """A step with every expression resolved: what the executor hands to a runtime."""

    name: str
    script: str
    env: dict[str, str]
    shebang: bool


def plain(value: Any) -> str:
    """How a matrix value reaches an environment variable: strings as they are, else JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def with_inputs(ctx: Context, inputs: Mapping[str, Any]) -> Context:
    """The context inside a template: its inputs, and params with the inputs merged over them."""
    if not inputs:
        return ctx
    params = {**ctx.params, **inputs}
    return replace(ctx, inputs=inputs, params=params)


def template_inputs(template: Template, given: Mapping[str, Any], ctx: Context,
                    where: str) -> dict[str, Any]:
    """A template's inputs: `use.inputs` resolved in the caller's context, then the defaults
    (themselves resolved); `StepError` when a required input has no value."""
    out: dict[str, Any] = {}  # undeclared inputs pass on, as in Butterflow; validate warns
    for name, value in given.items():
        out[name] = resolve_value(value, ctx, f"{where}.use.inputs.{name}")
    for spec in template.inputs:
        if spec.name in out:
            continue
        if spec.default is not None:
            out[spec.name] = resolve_value(spec.default, ctx,
                                           f"templates[{template.id}].inputs.{spec.name}.default")
        elif spec.required:
            raise StepError(f"{where}: template '{template.id}' requires input '{spec.name}'"
                            " and none was given")
    return out


def expand(workflow: Workflow, node_index: int, ctx_for: Callable[[], Context],
           gate: Callable[[Planned], bool] | None = None) -> Iterator[Planned]:
    """The node's steps with templates expanded, one at a time. `ctx_for()` returns the context
    now, so a template's inputs see the state written by the steps before it. `gate(planned)`
    decides a `use:` step's `if:` (the steps yielded carry their own `if:`, for the caller)."""
    node = workflow.nodes[node_index]
    templates = {t.id: (i, t) for i, t in enumerate(workflow.templates)}
    for s, step in enumerate(node.steps):
        where = f"nodes[{node_index}].steps[{s}]"
        if step.use is None:
            check_kind(step, where)
            yield Planned(step, where)
            continue
        found = templates.get(step.use.template)
        if found is None:
            raise StepError(f"{where}.use: no template '{step.use.template}'")
        if step.if_ is not None and gate is not None and not gate(Planned(step, where)):
            continue
        t_index, template = found
        inputs = template_inputs(template, step.use.inputs, ctx_for(), where)
        caller = step.display_name(s)
        env = {**template.env, **step.env}
        for k, inner in enumerate(template.steps):
            inner_where = f"templates[{t_index}].steps[{k}]"
            if inner.use is not None:
                raise StepError(f"{inner_where}: a template step cannot use another template")
            check_kind(inner, inner_where)
            yield Planned(inner, inner_where, inputs, env, caller)
        if template.outputs:
            yield Planned(step, f"templates[{t_index}].outputs", inputs, env, caller,
                          outputs_of=template)


def check_kind(step: Step, where: str) -> None:
    """StepError for a step Ferry cannot run (validation refuses these already)."""
    if step.run is not None or step.kind in CODEMOD_STEP_KINDS:
        return
    for label, attr in UNSUPPORTED_STEP_KINDS.items():
        if getattr(step, attr) is not None:
            raise StepError(f"{where}: {unsupported_kind_message(label)}")
    raise StepError(f"{where}: a step needs 'run', 'use' or a codemod kind")


def kind_config(planned: Planned, ctx_for: Callable[[], Context]) -> dict[str, Any]:
    """A codemod step's configuration (`js-ast-grep: {...}`...) with its `${{ }}` resolved in
    the step's context, as written otherwise (unset fields left out)."""
    step = planned.step
    kind = step.kind
    model = getattr(step, CODEMOD_STEP_KINDS[kind])
    raw: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    if not contains(json.dumps(raw)):
        return raw
    resolved: dict[str, Any] = resolve_value(raw, with_inputs(ctx_for(), planned.inputs),
                                             f"{planned.where}.{kind}")
    return resolved


def template_outputs(planned: Planned, ctx: Context) -> dict[str, Any]:
    """The values of a template's `outputs:` (each `value` resolved in the template's context:
    its inputs, the params, the state, the matrix); an output without a value is skipped."""
    template = planned.outputs_of
    if template is None:
        return {}
    inner = with_inputs(ctx, planned.inputs)
    out: dict[str, Any] = {}
    for k, spec in enumerate(template.outputs):
        if spec.value is None:
            continue
        out[spec.name] = resolve(spec.value, inner, f"{planned.where}[{k}].value")
    return out


def render(planned: Planned, index: int, ctx_for: Callable[[], Context],
           protected: Collection[str] = ()) -> Rendered:
    """Resolve the step's name, env and script; `ExpressionError` names what is unresolvable.
    `ctx_for()` is called only when the step has an expression (most have none). Env names in
    `protected` (matrix values, the run's ids) are not the step's to set: they are dropped."""
    step = planned.step
    name = step.name or step.id or step.default_name(index)
    script = step.run or ""
    named = bool(step.name or step.id)  # a default name is shown as written, never resolved
    if ((named and contains(name)) or contains(script)
            or any(contains(v) for v in planned.template_env.values())
            or any(contains(v) for v in step.env.values())):
        ctx = with_inputs(ctx_for(), planned.inputs)
        rendered = _render_expressions(planned, name if named else None, script, ctx)
        if not named:
            rendered = replace(rendered, name=_called(planned, name))
    else:
        rendered = _rendered(_called(planned, name), script,
                             {**planned.template_env, **step.env})
    if protected and not rendered.env.keys().isdisjoint(protected):
        for key in [k for k in rendered.env if k in protected]:
            del rendered.env[key]
    return rendered


def _called(planned: Planned, name: str) -> str:
    return f"{planned.caller} / {name}" if planned.caller else name


def _render_expressions(planned: Planned, name: str | None, script: str,
                        ctx: Context) -> Rendered:
    where = planned.where
    shown = _called(planned, resolve(name, ctx, f"{where}.name")) if name is not None else ""
    env: dict[str, str] = {}
    for key, value in planned.template_env.items():
        env[key] = resolve(value, ctx, f"{where}.env.{key}")
    for key, value in planned.step.env.items():
        env[key] = resolve(value, ctx, f"{where}.env.{key}")
    return _rendered(shown, resolve(script, ctx, f"{where}.run"), env)


def _rendered(name: str, script: str, env: dict[str, str]) -> Rendered:
    stripped = script.lstrip("\n\r\t ")
    shebang = stripped.startswith("#!")
    return Rendered(name, stripped if shebang else script, env, shebang)


def task_env(node: Node, node_index: int, matrix: Mapping[str, Any] | None, ctx: Context, *,
             run_id: str, task_id: str) -> tuple[dict[str, str], frozenset[str]]:
    """The task-wide environment (node env resolved, matrix values, the run's ids) and the
    names no step env may override (those and the per-step variables)."""
    env: dict[str, str] = {}
    for key, value in node.env.items():
        env[key] = resolve(value, ctx, f"nodes[{node_index}].env.{key}")
    fixed: dict[str, str] = {str(key): plain(value) for key, value in (matrix or {}).items()}
    fixed.update({
        "FERRY_RUN_ID": run_id,
        "FERRY_TASK_ID": task_id,
        "FERRY_NODE_ID": node.id,
        "CODEMOD_TASK_ID": task_id,
        "CODEMOD_WORKFLOW_RUN_ID": run_id,
    })
    env.update(fixed)
    return env, frozenset(fixed) | STEP_FILE_VARS


def task_runtime(workflow: Workflow, node: Node) -> RuntimeOptions:
    """Where the node's task runs: its own `runtime`, else the `runtime` of a template it uses
    (validation refuses templates whose runtimes differ from the node's or each other's), else
    the host."""
    if node.runtime is not None:
        return node.runtime
    templates = {t.id: t for t in workflow.templates}
    for step in node.steps:
        template = templates.get(step.use.template) if step.use is not None else None
        if template is not None and template.runtime is not None:
            return template.runtime
    return RuntimeOptions()


STEP_FILE_VARS = frozenset({"STATE_OUTPUTS", "TASK_OUTPUTS", "CODEMOD_STATE", "CODEMOD_PATH"})
"""The per-step paths the engine gives every step (as the step's runtime sees them)."""


INLINE_LIMIT = 32 * 1024
"""Longest script (in UTF-8 bytes) passed as an argument; Linux refuses one argument over 128 KiB,
and the environment shares the same budget."""


def argv_for(script_path: str, shebang: bool) -> list[str]:
    """How a step's script file is executed (the path as the runtime sees it)."""
    return [script_path] if shebang else ["/bin/sh", "-e", script_path]


def inline_argv(script: str, shebang: bool) -> list[str] | None:
    """`/bin/sh -e -c SCRIPT` for a shell script that fits in one argument; None when the script
    needs a file: a shebang, a NUL byte, a leading '-' or '+' (the shell would read it as an
    option), or too long. Saves creating a file per step."""
    if shebang or "\0" in script or script[:1] in ("-", "+"):
        return None
    if len(script) * 4 > INLINE_LIMIT and len(script.encode("utf-8", "replace")) > INLINE_LIMIT:
        return None
    return ["/bin/sh", "-e", "-c", script]


__all__ = ["INLINE_LIMIT", "STEP_FILE_VARS", "ExpressionError", "Planned", "Rendered",
           "StepError", "argv_for", "check_kind", "expand", "inline_argv", "kind_config",
           "plain", "render",
           "task_env", "task_runtime", "template_inputs", "template_outputs", "with_inputs"]
