"""Unknown keys: every mapping of the raw document is compared with the keys the model knows.

An unknown key is a warning with a "did you mean" hint (a typo must not pass silently), an error
under `--strict`. Free-form mappings (env, template inputs given by `use`, matrix values, the
configuration of unsupported step kinds) are not checked.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from runner.workflow import model as m
from runner.workflow.validate_checks import Add, Path, hint


def _keys(definition: type[BaseModel]) -> frozenset[str]:
    """The keys (aliases where set) one model reads."""
    return frozenset(f.alias or name for name, f in definition.model_fields.items())


# kind -> (known keys, {key: (shape, child kind)}), shape: "one" | "list" | "map"
_SHAPES: dict[str, tuple[frozenset[str], dict[str, tuple[str, str]]]] = {
    "workflow": (_keys(m.Workflow), {"state": ("one", "state"), "templates": ("list", "template"),
                                     "nodes": ("list", "node")}),
    "state": (_keys(m.StateSection), {"schema": ("list", "entry")}),
    "entry": (_keys(m.StateSchemaEntry), {"items": ("one", "prop"),
                                          "properties": ("map", "prop")}),
    "prop": (_keys(m.SchemaProperty), {"items": ("one", "prop"), "properties": ("map", "prop")}),
    "template": (_keys(m.Template), {"runtime": ("one", "runtime"), "inputs": ("list", "input"),
                                     "outputs": ("list", "output"), "steps": ("list", "step")}),
    "input": (_keys(m.TemplateInput), {}),
    "output": (_keys(m.TemplateOutput), {}),
    "node": (_keys(m.Node), {"trigger": ("one", "trigger"), "runtime": ("one", "runtime"),
                             "strategy": ("one", "strategy"), "steps": ("list", "step"),
                             "retry": ("one", "retry")}),
    "trigger": (_keys(m.Trigger), {}),
    "runtime": (_keys(m.Runtime), {}),
    "strategy": (_keys(m.Strategy), {}),
    "retry": (_keys(m.Retry), {}),
    "step": (_keys(m.Step), {"use": ("one", "use")}),
    "use": (_keys(m.UseTemplate), {}),
}
# keys the structural checks already explain with a better message
_EXPLAINED = {("step", "uses"), ("step", "commands"), ("node", "run")}
_MAX_DEPTH = 40


def check_unknown_keys(data: dict[str, Any], add: Add, strict: bool) -> None:
    """Report keys no model knows; warnings, or errors when `strict`."""
    severity = "error" if strict else "warning"
    todo: list[tuple[Any, str, Path]] = [(data, "workflow", ())]
    while todo:
        value, kind, where = todo.pop()
        if not isinstance(value, dict) or len(where) > _MAX_DEPTH:
            continue
        known, children = _SHAPES[kind]
        for key in value:
            if key not in known and (kind, key) not in _EXPLAINED:
                add((*where, key), f"unknown key '{key}'{hint(key, known)}", severity)
        for key, (shape, child) in children.items():
            item = value.get(key)
            if shape == "one":
                todo.append((item, child, (*where, key)))
            elif shape == "list" and isinstance(item, list):
                todo.extend((x, child, (*where, key, i)) for i, x in enumerate(item))
            elif shape == "map" and isinstance(item, dict):
                todo.extend((x, child, (*where, key, k)) for k, x in item.items())
