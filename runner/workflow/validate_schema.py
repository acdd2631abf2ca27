"""Checks of the typed parts of a workflow: `state.schema` (in either shape) and
`params.schema` — duplicate keys, keys that do not apply to a type, defaults of the wrong type
or outside a string's `oneOf` values.
"""

from __future__ import annotations

from typing import Any

from runner.workflow.validate_base import Add, Facts, Path, as_dict, as_list, as_str
from runner.workflow.values import allowed_values, default_value, problem

_STRING_ONLY = ("oneOf", "multi_line", "secret")
_MAX_DEPTH = 32


def check_state(state: dict[str, Any], facts: Facts, add: Add) -> None:
    """`state.schema`: the map form `{files: {type: array}}` or the list form
    `[{name: files, type: array}]`; fills `facts.state_schema`."""
    if "schema" not in state:
        return
    facts.state_schema = {}
    schema = state.get("schema")
    if isinstance(schema, dict):
        for name, entry in schema.items():
            if isinstance(entry, dict):
                facts.state_schema[str(name)] = entry
                check_property(entry, ("state", "schema", name), add)
        return
    for k, entry in enumerate(as_list(schema)):
        entry = as_dict(entry)
        name = as_str(entry.get("name"))
        if name is None:
            continue
        where: Path = ("state", "schema", k)
        if name in facts.state_schema:
            add((*where, "name"), f"Duplicate state schema entry '{name}'")
        facts.state_schema.setdefault(name, entry)
        check_property(entry, where, add)


def check_params(params: dict[str, Any], facts: Facts, add: Add) -> None:
    """`params.schema`: every declared param; fills `facts.params`."""
    if "schema" not in params:
        return
    facts.params = {}
    for name, prop in as_dict(params.get("schema")).items():
        if isinstance(prop, dict):
            facts.params[str(name)] = prop
            check_property(prop, ("params", "schema", name), add)


def check_property(prop: dict[str, Any], where: Path, add: Add, depth: int = 0) -> None:
    """Keys that do not apply to the property's type (warnings) and a default that does not
    fit it (an error), recursively through items and properties."""
    kind = prop.get("type")
    if "items" in prop and kind != "array":
        add((*where, "items"), f"'items' only applies to type 'array' (this is '{kind}')",
            "warning")
    if "properties" in prop and kind != "object":
        add((*where, "properties"),
            f"'properties' only applies to type 'object' (this is '{kind}')", "warning")
    for key in _STRING_ONLY:
        if key in prop and kind != "string":
            add((*where, key), f"'{key}' only applies to type 'string' (this is '{kind}')",
                "warning")
    if kind == "string" and "oneOf" in prop and allowed_values(prop) == []:
        add((*where, "oneOf"), "'oneOf' allows no value: give each alternative an 'enum' list")
    if prop.get("default") is not None and isinstance(kind, str):
        found = problem(prop, default_value(prop), "the default")
        if found:
            add((*where, "default"), found)
    if depth > _MAX_DEPTH:
        return
    if isinstance(prop.get("items"), dict):
        check_property(prop["items"], (*where, "items"), add, depth + 1)
    for name, sub in as_dict(prop.get("properties")).items():
        if isinstance(sub, dict):
            check_property(sub, (*where, "properties", name), add, depth + 1)
