"""Values against a SimpleSchema property: the type check of state writes, param values and
defaults, and the conversion of a `--param` text to its declared type. Pure functions over the
raw (dict) form of a property, so that the validator and the engine share them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_MAX_DEPTH = 64


def kind_of(value: Any) -> str:
    """The JSON type of a value, as messages name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def shown(value: Any, limit: int = 40) -> str:
    """A short rendering of a value for messages."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def allowed_values(prop: Mapping[str, Any]) -> list[str] | None:
    """The union of a string property's `oneOf` enums; None when it has none."""
    variants = prop.get("oneOf")
    if not isinstance(variants, list) or not variants:
        return None
    out: list[str] = []
    for variant in variants:
        enum = variant.get("enum") if isinstance(variant, Mapping) else None
        for item in enum if isinstance(enum, list) else []:
            if isinstance(item, str) and item not in out:
                out.append(item)
    return out


def _matches(want: str, value: Any) -> bool:
    if want == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if want == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return kind_of(value) == want


def problem(prop: Mapping[str, Any], value: Any, what: str, depth: int = 0) -> str | None:
    """Why `value` does not fit `prop` (one line naming `what`, e.g. `state key 'files'`), or
    None. Items and declared properties are checked recursively; undeclared properties of an
    object are allowed."""
    want = prop.get("type")
    if not isinstance(want, str) or depth > _MAX_DEPTH:
        return None
    if not _matches(want, value):
        return f"{what} is {_article(kind_of(value))} ({shown(value)}); the schema wants {want}"
    if want == "string":
        allowed = allowed_values(prop)
        if allowed is not None and value not in allowed:
            return f"{what} is {shown(value)}, not one of: {', '.join(allowed)}"
    elif want == "array" and isinstance(prop.get("items"), Mapping):
        for i, item in enumerate(value):
            found = problem(prop["items"], item, f"{what}[{i}]", depth + 1)
            if found:
                return found
    elif want == "object" and isinstance(prop.get("properties"), Mapping):
        for key, sub in prop["properties"].items():
            if key in value and isinstance(sub, Mapping):
                found = problem(sub, value[key], f"{what}.{key}", depth + 1)
                if found:
                    return found
    return None


def _article(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def from_text(prop: Mapping[str, Any], text: str) -> Any:
    """A `--param` or `$STATE_OUTPUTS` text read as the type `prop` declares: a string stays the
    text, a number/integer/boolean/array/object is parsed (JSON; booleans also True/False).
    Returns the text unchanged when it does not parse (the type check then says why)."""
    want = prop.get("type")
    if want == "string":
        return text
    if want == "boolean" and text.strip().lower() in ("true", "false"):
        return text.strip().lower() == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text


def default_value(prop: Mapping[str, Any]) -> Any:
    """A property's default as a value of its type: upstream writes array and object defaults as
    JSON text, which is parsed here."""
    default = prop.get("default")
    if isinstance(default, str) and prop.get("type") in ("array", "object", "number",
                                                         "integer", "boolean"):
        return from_text(prop, default)
    return default
