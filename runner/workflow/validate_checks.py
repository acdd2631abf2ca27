"""Structural checks on the raw workflow document: ids, dependencies, cycles, templates, matrix
strategies, state schema, runtimes, durations, step kinds and unknown keys.

They work on the parsed YAML/JSON values (not the pydantic model) so that every problem is found
in one pass even when the schema check fails; anything of the wrong shape is skipped here (the
schema check reports it).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from runner.workflow.graph import find_cycles
from runner.workflow.spec import UNSUPPORTED_STEP_KINDS, parse_duration
from runner.workflow.yamlsource import PathKey

Path = tuple[PathKey, ...]
Add = Callable[..., None]  # add(path, message, severity="error")

STEP_KINDS = ("run", "use", *UNSUPPORTED_STEP_KINDS)
_LEGACY_STEP_KEYS = {
    "uses": "'uses' is not Butterflow v1 syntax; write 'use: {template: <id>, inputs: {...}}'",
    "commands": "'commands' is legacy Butterflow syntax; write 'run: |' followed by the commands",
}
_CONTAINER_RUNTIMES = ("docker", "podman")


def as_list(value: Any) -> list[Any]:
    """`value` if it is a list, else an empty list."""
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a mapping, else an empty mapping."""
    return value if isinstance(value, dict) else {}


def as_str(value: Any) -> str | None:
    """`value` if it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def hint(word: str, choices: Iterable[str]) -> str:
    """A ` (did you mean 'x'?)` suffix when a close match exists, else ''."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


@dataclass
class Facts:
    """What the structural pass learned, for the reference checks and the summary."""

    node_ids: list[str] = field(default_factory=list)
    node_index: dict[str, int] = field(default_factory=dict)
    deps: dict[str, list[str]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    state_schema: dict[str, dict[str, Any]] | None = None
    dependency_count: int = 0
    template_refs: int = 0
    matrix_nodes: int = 0


def check_structure(data: dict[str, Any], add: Add) -> Facts:
    """Run every structural check on the raw document, reporting through `add`."""
    facts = Facts()
    _check_state(as_dict(data.get("state")), facts, add)
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


def _check_state(state: dict[str, Any], facts: Facts, add: Add) -> None:
    if "schema" not in state:
        return
    facts.state_schema = {}
    for k, entry in enumerate(as_list(state.get("schema"))):
        entry = as_dict(entry)
        name = as_str(entry.get("name"))
        if name is None:
            continue
        where: Path = ("state", "schema", k)
        if name in facts.state_schema:
            add((*where, "name"), f"Duplicate state schema entry '{name}'")
        facts.state_schema.setdefault(name, entry)
        _check_schema_type(entry, where, add)


def _check_schema_type(entry: dict[str, Any], where: Path, add: Add, depth: int = 0) -> None:
    kind = entry.get("type")
    if "items" in entry and kind != "array":
        add((*where, "items"), f"'items' only applies to type 'array' (this is '{kind}')",
            "warning")
    if "properties" in entry and kind != "object":
        add((*where, "properties"),
            f"'properties' only applies to type 'object' (this is '{kind}')", "warning")
    if depth > 32:
        return
    if isinstance(entry.get("items"), dict):
        _check_schema_type(entry["items"], (*where, "items"), add, depth + 1)
    for name, prop in as_dict(entry.get("properties")).items():
        if isinstance(prop, dict):
            _check_schema_type(prop, (*where, "properties", name), add, depth + 1)


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


def _check_runtime(runtime: Any, where: Path, add: Add) -> None:
    runtime = as_dict(runtime)
    kind = runtime.get("type")
    if kind in _CONTAINER_RUNTIMES and not as_str(runtime.get("image")):
        add(where, f"runtime '{kind}' requires an 'image'")


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
                add((*at, kind), f"step kind '{kind}' is not supported by Ferry "
                                 "(use a 'run' step that calls the tool)")
        if not kinds:
            legacy = [k for k in _LEGACY_STEP_KEYS if step.get(k) is not None]
            if legacy:
                for key in legacy:
                    add((*at, key), _LEGACY_STEP_KEYS[key])
            else:
                add(at, "a step needs 'run' or 'use'")
        elif len(kinds) > 1:
            add(at, "a step has exactly one of 'run' or 'use' (found "
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
