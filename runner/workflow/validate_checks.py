"""Structural checks on the raw workflow document: ids, dependencies, cycles, templates, matrix
strategies, state schema, runtimes, durations, step kinds and unknown keys.

They work on the parsed YAML/JSON values (not the pydantic model) so that every problem is found
in one pass even when the schema check fails; anything of the wrong shape is skipped here (the
schema check reports it).
"""

from __future__ import annotations

import json
from typing import Any

from runner.workflow.graph import find_cycles
from runner.workflow.spec import (
    CODEMOD_STEP_KINDS,
    UNSUPPORTED_STEP_KINDS,
    parse_duration,
    unsupported_kind_message,
)

# re-exported: the other validation passes import these from here
from runner.workflow.validate_base import Add as Add
from runner.workflow.validate_base import Facts as Facts
from runner.workflow.validate_base import Path as Path
from runner.workflow.validate_base import as_dict as as_dict
from runner.workflow.validate_base import as_list as as_list
from runner.workflow.validate_base import as_str as as_str
from runner.workflow.validate_base import hint as hint
from runner.workflow.validate_codemod import BundleFiles, check_codemod_step
from runner.workflow.validate_schema import check_params, check_state

STEP_KINDS = ("run", "use", *CODEMOD_STEP_KINDS, *UNSUPPORTED_STEP_KINDS)
_LEGACY_STEP_KEYS = {
    "uses": "'uses' is not Butterflow v1 syntax; write 'use: {template: <id>, inputs: {...}}'",
    "commands": "'commands' is legacy Butterflow syntax; write 'run: |' followed by the commands",
}
_CONTAINER_RUNTIMES = ("docker", "podman")
_CONTAINER_ONLY = ("image", "user", "network", "options", "privileged", "mounts", "memory",
                   "cpus", "pids", "pull")


def check_structure(data: dict[str, Any], add: Add, files: BundleFiles | None = None) -> Facts:
    """Run every structural check on the raw document, reporting through `add`; `files` tells
    whether a file exists in the workflow's directory (None: not checked)."""
    facts = Facts(files=files)
    check_state(as_dict(data.get("state")), facts, add)
    check_params(as_dict(data.get("params")), facts, add)
    for t, tpl in enumerate(as_list(data.get("templates"))):
        if isinstance(tpl, dict):
            _check_template(tpl, ("templates", t), facts, add)
    nodes = as_list(data.get("nodes"))
    for i, node in enumerate(nodes):
        node_id = as_str(as_dict(node).get("id"))
        if node_id is None:
            continue
        if node_id in facts.node_index:
            first = facts.node_index[node_id]
            add(("nodes", i, "id"), f"Duplicate node ID '{node_id}' (first at nodes[{first}])")
            continue
        facts.node_index[node_id] = i
        facts.node_ids.append(node_id)
    for i, node in enumerate(nodes):
        if isinstance(node, dict):
            _check_node(node, ("nodes", i), facts, add)
    for cycle in find_cycles(facts.node_ids, facts.deps):
        add(("nodes", facts.node_index[cycle[0]]),
            "Cyclic dependency detected: " + " → ".join(cycle), anonymous=True)
    return facts


def _check_template(tpl: dict[str, Any], where: Path, facts: Facts, add: Add) -> None:
    tpl_id = as_str(tpl.get("id"))
    if tpl_id is not None:
        if tpl_id in facts.templates:
            add((*where, "id"), f"Duplicate template ID '{tpl_id}'")
        else:
            facts.templates[tpl_id] = tpl
    seen: set[str] = set()
    for k, item in enumerate(as_list(tpl.get("inputs"))):
        name = as_str(as_dict(item).get("name"))
        if name is not None and name in seen:
            add((*where, "inputs", k, "name"), f"Duplicate input '{name}'")
        if name is not None:
            seen.add(name)
    _check_runtime(tpl.get("runtime"), (*where, "runtime"), add)
    _check_steps(tpl, where, facts, add, in_template=True)


def _check_node(node: dict[str, Any], where: Path, facts: Facts, add: Add) -> None:
    node_id = as_str(node.get("id")) or ""
    deps: list[str] = []
    for k, dep in enumerate(as_list(node.get("depends_on"))):
        if not isinstance(dep, str):
            continue
        facts.dependency_count += 1
        if dep not in facts.node_index:
            add((*where, "depends_on", k),
                f"Referenced node '{dep}' does not exist{hint(dep, facts.node_ids)}")
        elif dep in deps:
            add((*where, "depends_on", k), f"'{dep}' is listed twice", "warning")
        else:
            deps.append(dep)
    if facts.node_index.get(node_id) == where[-1]:
        facts.deps[node_id] = deps
    _check_runtime(node.get("runtime"), (*where, "runtime"), add)
    _check_strategy(node, where, facts, add)
    _check_duration(node.get("timeout"), (*where, "timeout"), add)
    _check_duration(as_dict(node.get("retry")).get("backoff"), (*where, "retry", "backoff"), add,
                    allow_zero=True)
    if "run" in node and "steps" not in node:
        add((*where, "run"), "a node has no 'run'; put it in 'steps: [{run: ...}]'")
    _check_steps(node, where, facts, add, in_template=False)
    _check_template_runtimes(node, where, facts, add)


def _check_runtime(runtime: Any, where: Path, add: Add) -> None:
    runtime = as_dict(runtime)
    kind = runtime.get("type", "direct")
    if kind in _CONTAINER_RUNTIMES and not as_str(runtime.get("image")):
        add(where, f"runtime '{kind}' requires an 'image'")
    if kind == "direct":
        for key in _CONTAINER_ONLY:
            if runtime.get(key) not in (None, False, []):
                add((*where, key), f"'{key}' applies to docker and podman runtimes only; "
                                   "runtime 'direct' runs steps on the host")


def _runtime_key(runtime: Any) -> str:
    """A comparable form of a runtime mapping (type defaults to direct)."""
    value = {"type": "direct", **as_dict(runtime)}
    return json.dumps(value, sort_keys=True, default=str)


def _check_template_runtimes(node: dict[str, Any], where: Path, facts: Facts, add: Add) -> None:
    """A task runs all its steps in one runtime: a template's `runtime` is honoured when the
    node has none (or the same), refused when it differs from the node's or another's."""
    node_runtime = node.get("runtime")
    chosen: tuple[str, str] | None = None  # (runtime key, who asked for it)
    if isinstance(node_runtime, dict):
        chosen = (_runtime_key(node_runtime), f"node '{node.get('id')}'")
    for j, step in enumerate(as_list(node.get("steps"))):
        tpl_id = as_str(as_dict(as_dict(step).get("use")).get("template"))
        tpl = facts.templates.get(tpl_id or "")
        if tpl is None or not isinstance(tpl.get("runtime"), dict):
            continue
        key = _runtime_key(tpl["runtime"])
        if chosen is None:
            chosen = (key, f"template '{tpl_id}'")
        elif key != chosen[0]:
            add((*where, "steps", j, "use"),
                f"template '{tpl_id}' declares a runtime that differs from the one of "
                f"{chosen[1]}: a task runs all its steps in one runtime (make them the same, "
                "or drop one)")


def _check_duration(value: Any, where: Path, add: Add, allow_zero: bool = False) -> None:
    if value is None or (allow_zero and value in (0, "0")):
        return
    if not isinstance(value, str | int | float):
        return  # the schema check reports the type
    try:
        parse_duration(value)
    except ValueError as exc:
        add(where, str(exc))


def _check_strategy(node: dict[str, Any], where: Path, facts: Facts, add: Add) -> None:
    strategy = node.get("strategy")
    if not isinstance(strategy, dict):
        return
    facts.matrix_nodes += 1
    at: Path = (*where, "strategy")
    has_values = strategy.get("values") is not None
    has_state = strategy.get("from_state") is not None
    if not has_values and not has_state:
        add(at, "Matrix strategy requires 'values' or 'from_state' property")
    elif has_values and has_state:
        add(at, "Matrix strategy takes 'values' or 'from_state', not both")
    values = strategy.get("values")
    if isinstance(values, list):
        if not values:
            add((*at, "values"), "matrix 'values' is empty: the node would create no tasks",
                "warning")
        for k, item in enumerate(values):
            if not isinstance(item, dict):
                add((*at, "values", k), "a matrix value must be a mapping of keys to values "
                    f"(e.g. '- region: us-east'), not {type(item).__name__}")
            elif not item:
                add((*at, "values", k), "a matrix value is empty", "warning")
    key = strategy.get("from_state")
    if isinstance(key, str) and facts.state_schema is not None:
        name = key.split(".", 1)[0].split("[", 1)[0]
        entry = facts.state_schema.get(name)
        if entry is None:
            add((*at, "from_state"), f"state key '{name}' is not declared in state.schema"
                + hint(name, facts.state_schema))
        elif name == key and entry.get("type") not in (None, "array"):
            add((*at, "from_state"),
                f"state key '{name}' is declared as '{entry.get('type')}'; a matrix needs an array")


def _check_steps(owner: dict[str, Any], where: Path, facts: Facts, add: Add,
                 in_template: bool) -> None:
    step_ids: dict[str, int] = {}
    for j, step in enumerate(as_list(owner.get("steps"))):
        if not isinstance(step, dict):
            continue
        at: Path = (*where, "steps", j)
        step_id = as_str(step.get("id"))
        if step_id is not None:
            if step_id in step_ids:
                first = step_ids[step_id]
                add((*at, "id"), f"Duplicate step ID '{step_id}' (first at steps[{first}])")
            else:
                step_ids[step_id] = j
        kinds = [k for k in STEP_KINDS if step.get(k) is not None]
        for kind in kinds:
            if kind in UNSUPPORTED_STEP_KINDS:
                add((*at, kind), unsupported_kind_message(kind))
        names = (as_str(step.get("name")) or step_id or f"step {j + 1}",
                 as_str(owner.get("name")) or as_str(owner.get("id")) or "?")
        check_codemod_step(step, at, add, facts.files, names)
        if not kinds:
            legacy = [k for k in _LEGACY_STEP_KEYS if step.get(k) is not None]
            if legacy:
                for key in legacy:
                    add((*at, key), _LEGACY_STEP_KEYS[key])
            else:
                add(at, "a step needs 'run' or 'use'")
        elif len(kinds) > 1:
            add(at, "a step has exactly one of 'run', 'use', 'js-ast-grep', 'ast-grep', "
                "'codemod' or 'shard' (found "
                + " and ".join(f"'{k}'" for k in kinds) + ")")
        _check_duration(step.get("timeout"), (*at, "timeout"), add)
        if step.get("use") is not None:
            if in_template:
                add((*at, "use"), "a template step cannot 'use' another template")
            else:
                facts.template_refs += 1
                _check_use(as_dict(step.get("use")), (*at, "use"), facts, add)


def _check_use(use: dict[str, Any], at: Path, facts: Facts, add: Add) -> None:
    tpl_id = as_str(use.get("template"))
    if tpl_id is None:
        return
    tpl = facts.templates.get(tpl_id)
    if tpl is None:
        add((*at, "template"),
            f"Referenced template '{tpl_id}' does not exist{hint(tpl_id, facts.templates)}")
        return
    given = as_dict(use.get("inputs"))
    declared: dict[str, dict[str, Any]] = {}
    for item in as_list(tpl.get("inputs")):
        name = as_str(as_dict(item).get("name"))
        if name is not None:
            declared.setdefault(name, as_dict(item))
    for name, spec in declared.items():
        if spec.get("required") is True and spec.get("default") is None and name not in given:
            add((*at, "inputs") if "inputs" in use else at,
                f"template '{tpl_id}' requires input '{name}' (it has no default)")
    for name in given:
        if name not in declared:
            add((*at, "inputs", name), f"template '{tpl_id}' declares no input '{name}'"
                + hint(name, declared), "warning")
