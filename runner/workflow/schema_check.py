"""Check a parsed document against the workflow JSON Schema without importing pydantic.

Covers the subset of JSON Schema that `model_json_schema` emits for our models ($ref, anyOf,
type, enum, const, properties, required, items, additionalProperties, minLength, minItems,
minimum, maximum, pattern). It is at least as strict as the pydantic models, so a document that
passes here also builds the model (a property test holds the two together); messages use
pydantic's wording so that both paths read alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from runner.workflow.schema_data import SCHEMA
from runner.workflow.yamlsource import PathKey

Path = tuple[PathKey, ...]
_TYPE_NAMES = {"string": "a valid string", "array": "a valid list", "object": "a valid dictionary",
               "integer": "a valid integer", "number": "a valid number",
               "boolean": "a valid boolean", "null": "null"}
_MAX_DEPTH = 64


def _is_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return value is None if kind == "null" else True


def _same(a: Any, b: Any) -> bool:
    """JSON equality: `true` is not `1`."""
    return (type(a) is type(b) and a == b) or (
        _is_type(a, "number") and _is_type(b, "number") and a == b)


@lru_cache(maxsize=64)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = SCHEMA["$defs"][name]
    return schema


def _shown(value: Any) -> str:
    if isinstance(value, dict | list):
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(schema: dict[str, Any]) -> str:
    schema = _resolve(schema)
    if "enum" in schema:
        options = [repr(v) for v in schema["enum"]]
        return " or ".join([", ".join(options[:-1]), options[-1]] if len(options) > 1
                           else options)
    if "const" in schema:
        return repr(schema["const"])
    if "anyOf" in schema:
        return " or ".join(_describe(s) for s in schema["anyOf"])
    return _TYPE_NAMES.get(schema.get("type", ""), "valid")


def _matches(value: Any, schema: dict[str, Any], depth: int) -> bool:
    return next(iter(errors(value, schema, (), depth)), None) is None


def errors(value: Any, schema: dict[str, Any] | None = None, path: Path = (),
           depth: int = 0) -> Iterator[tuple[Path, str]]:
    """Every (path, message) where `value` breaks `schema` (the workflow schema by default)."""
    schema = _resolve(SCHEMA if schema is None else schema)
    if depth > _MAX_DEPTH:
        return
    if "anyOf" in schema:
        branches = schema["anyOf"]
        if value is None and any(_resolve(b).get("type") == "null" for b in branches):
            return
        others = [b for b in branches if _resolve(b).get("type") != "null"]
        if len(others) == 1:  # Optional[X]: report X's own problems
            yield from errors(value, others[0], path, depth + 1)
        elif not any(_matches(value, b, depth + 1) for b in others):
            yield path, f"Input should be {_describe(schema)} (got {_shown(value)})"
        return
    if "enum" in schema and not any(_same(value, v) for v in schema["enum"]):
        yield path, f"Input should be {_describe(schema)} (got {_shown(value)})"
        return
    if "const" in schema and not _same(value, schema["const"]):
        yield path, f"Input should be {schema['const']!r} (got {_shown(value)})"
        return
    kind = schema.get("type")
    if kind is not None and not _is_type(value, kind):
        yield path, f"Input should be {_TYPE_NAMES.get(kind, kind)} (got {_shown(value)})"
        return
    yield from _constraints(value, schema, path)
    if isinstance(value, dict):
        yield from _object(value, schema, path, depth)
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from errors(item, schema["items"], (*path, i), depth + 1)


def _constraints(value: Any, schema: dict[str, Any], path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            yield path, "String should have at least 1 character"
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            yield path, f"String should match pattern '{schema['pattern']}' (got {_shown(value)})"
    elif isinstance(value, list) and len(value) < schema.get("minItems", 0):
        yield path, (f"List should have at least {schema['minItems']} item"
                     f"{'s' if schema['minItems'] != 1 else ''}, not {len(value)}")
    elif _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            yield path, f"Input should be greater than or equal to {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            yield path, f"Input should be less than or equal to {schema['maximum']}"


def _object(value: dict[str, Any], schema: dict[str, Any], path: Path,
            depth: int) -> Iterator[tuple[Path, str]]:
    for name in schema.get("required", ()):
        if name not in value:
            yield path, f"missing required property '{name}'"
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if key in properties:
            yield from errors(item, properties[key], (*path, key), depth + 1)
        elif isinstance(extra, dict):
            yield from errors(item, extra, (*path, key), depth + 1)
