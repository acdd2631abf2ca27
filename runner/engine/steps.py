"""Step composition: expand templates, resolve `${{ }}` in each step, build its script and env.

A node's steps are expanded lazily, one at a time, because a step may read state that the step
before it wrote: `expand(workflow, node_index, ctx)` yields `Planned` steps, resolving a `use:`
step's inputs in the caller's context when the expansion reaches it (then the template's
defaults; a required input with no value fails the task). `render(planned, i, ctx_for)` resolves a
step's `run`, `env` and `name`. Inside a template `${{inputs.x}}` reads its inputs and, as in
Butterflow, `${{params.x}}` sees the inputs merged over the run params.

Environment of a step (later wins): node env, matrix values (strings plain, other values JSON),
FERRY_RUN_ID / FERRY_TASK_ID / FERRY_NODE_ID and the Butterflow aliases CODEMOD_TASK_ID /
CODEMOD_WORKFLOW_RUN_ID (task-wide, `task_env`); then template env, step env, STATE_OUTPUTS and
TASK_OUTPUTS (per step). A `run` starting with `#!` (after leading blank lines) is executed as
its own interpreter script, else with `/bin/sh -e`: given inline (`sh -e -c TEXT`) when it is
small enough for one argument, else from a script file (`inline_argv` says which).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from runner.errors import ExpressionError, FerryError
from runner.workflow.expressions import Context, contains, resolve, resolve_value
from runner.workflow.model import Node, Step, Template, Workflow


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


def expand(workflow: Workflow, node_index: int,
           ctx_for: Callable[[], Context]) -> Iterator[Planned]:
    """The node's steps with templates expanded, one at a time. `ctx_for()` returns the context
    now, so a template's inputs see the state written by the steps before it."""
    node = workflow.nodes[node_index]
    templates = {t.id: (i, t) for i, t in enumerate(workflow.templates)}
    for s, step in enumerate(node.steps):
        where = f"nodes[{node_index}].steps[{s}]"
        if step.use is None:
            _check_kind(step, where)
            yield Planned(step, where)
            continue
        found = templates.get(step.use.template)
        if found is None:
            raise StepError(f"{where}.use: no template '{step.use.template}'")
        t_index, template = found
        inputs = template_inputs(template, step.use.inputs, ctx_for(), where)
        caller = step.display_name(s)
        for k, inner in enumerate(template.steps):
            inner_where = f"templates[{t_index}].steps[{k}]"
            if inner.use is not None:
                raise StepError(f"{inner_where}: a template step cannot use another template")
            _check_kind(inner, inner_where)
            env = {**template.env, **step.env}
            yield Planned(inner, inner_where, inputs, env, caller)


def _check_kind(step: Step, where: str) -> None:
    if step.run is not None:
        return
    for label, attr in (("ast-grep", "ast_grep"), ("js-ast-grep", "js_ast_grep"),
                        ("codemod", "codemod")):
        if getattr(step, attr) is not None:
            raise StepError(f"{where}: '{label}' steps are not supported by Ferry")
    raise StepError(f"{where}: a step needs 'run' or 'use'")


def render(planned: Planned, index: int, ctx_for: Callable[[], Context]) -> Rendered:
    """Resolve the step's name, env and script; `ExpressionError` names what is unresolvable.
    `ctx_for()` is called only when the step has an expression (most have none)."""
    step = planned.step
    name = step.display_name(index)
    script = step.run or ""
    if (contains(name) or contains(script)
            or any(contains(v) for v in planned.template_env.values())
            or any(contains(v) for v in step.env.values())):
        return _render_expressions(planned, name, script, with_inputs(ctx_for(), planned.inputs))
    if planned.caller:
        name = f"{planned.caller} / {name}"
    return _rendered(name, script, {**planned.template_env, **step.env})


def _render_expressions(planned: Planned, name: str, script: str, ctx: Context) -> Rendered:
    where = planned.where
    name = resolve(name, ctx, f"{where}.name")
    if planned.caller:
        name = f"{planned.caller} / {name}"
    env: dict[str, str] = {}
    for key, value in planned.template_env.items():
        env[key] = resolve(value, ctx, f"{where}.env.{key}")
    for key, value in planned.step.env.items():
        env[key] = resolve(value, ctx, f"{where}.env.{key}")
    return _rendered(name, resolve(script, ctx, f"{where}.run"), env)


def _rendered(name: str, script: str, env: dict[str, str]) -> Rendered:
    stripped = script.lstrip("\n\r\t ")
    shebang = stripped.startswith("#!")
    return Rendered(name, stripped if shebang else script, env, shebang)


def task_env(node: Node, node_index: int, matrix: Mapping[str, Any] | None, ctx: Context, *,
             run_id: str, task_id: str) -> dict[str, str]:
    """The task-wide environment: node env (resolved), matrix values, Ferry and Butterflow ids."""
    env: dict[str, str] = {}
    for key, value in node.env.items():
        env[key] = resolve(value, ctx, f"nodes[{node_index}].env.{key}")
    for key, value in (matrix or {}).items():
        env[str(key)] = plain(value)
    env.update({
        "FERRY_RUN_ID": run_id,
        "FERRY_TASK_ID": task_id,
        "FERRY_NODE_ID": node.id,
        "CODEMOD_TASK_ID": task_id,
        "CODEMOD_WORKFLOW_RUN_ID": run_id,
    })
    return env


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


__all__ = ["INLINE_LIMIT", "ExpressionError", "Planned", "Rendered", "StepError", "argv_for",
           "expand", "inline_argv", "plain", "render", "task_env", "template_inputs",
           "with_inputs"]
