"""The state schema enforced on what steps write: every `$STATE_OUTPUTS` entry is checked
against `state.schema` (either shape) before it is applied.

A set must fit the key's declared type, an append must target a declared array and fit its
`items`, and a key the schema does not declare is refused; the step's task fails with the key,
the value's type and what the schema wants. A value is read as the declared type first: `v=1.2`
for a string key is the string "1.2", not the number. A workflow without a schema (or with an
empty one) writes anything, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from runner.engine.outputs import Entry, OutputsError
from runner.workflow.model import Workflow
from runner.workflow.validate_base import hint
from runner.workflow.values import from_text, problem


def state_schema(workflow: Workflow) -> dict[str, dict[str, Any]]:
    """The declared state keys as raw properties (empty: nothing is enforced)."""
    if workflow.state is None:
        return {}
    return {name: prop.model_dump(mode="json", by_alias=True, exclude_none=True)
            for name, prop in workflow.state.entries().items()}


def check_entries(entries: list[Entry], schema: Mapping[str, Mapping[str, Any]],
                  source: str) -> list[Entry]:
    """The entries with values read as their declared types; OutputsError on the first that
    does not fit."""
    if not schema:
        return entries
    out: list[Entry] = []
    for entry in entries:
        shown = f"{entry.key}@=..." if entry.append else f"{entry.key}=..."
        prop = schema.get(entry.key)
        if prop is None:
            raise OutputsError(source, entry.line, shown,
                               f"state key '{entry.key}' is not declared in state.schema"
                               + (hint(entry.key, schema)
                                  or f" (declared: {', '.join(schema)})"))
        if entry.append:
            if prop.get("type") != "array":
                raise OutputsError(source, entry.line, shown,
                                   f"cannot append to state key '{entry.key}': the schema "
                                   f"declares it {prop.get('type')}, not array")
            prop = prop.get("items") or {}
        value = _typed(prop, entry)
        found = problem(prop, value, f"the value of state key '{entry.key}'"
                        + (" (an appended item)" if entry.append else ""))
        if found:
            raise OutputsError(source, entry.line, shown, found)
        out.append(replace(entry, value=value))
    return out


def _typed(prop: Mapping[str, Any], entry: Entry) -> Any:
    """The entry's value read as `prop`'s type when it was written as text."""
    want = prop.get("type")
    if entry.text is None or not want:
        return entry.value
    if want == "string":  # "x" (JSON) is x; 1.2 or true stays the text written
        return entry.value if isinstance(entry.value, str) else entry.text
    if isinstance(entry.value, str):  # not JSON: True/False for a boolean
        return from_text(prop, entry.text)
    return entry.value
