"""Params against `params.schema`: each type read from its `--param` text, defaults, `oneOf`,
`multi_line`, undeclared and missing params, and a secret value never echoed (a table)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from runner.workflow.model import Workflow
from runner.workflow.params import check_params, mask, secret_names

SCHEMA = {
    "who": {"type": "string", "default": "world"},
    "count": {"type": "number", "default": 1},
    "tries": {"type": "integer", "default": 2},
    "loud": {"type": "boolean", "default": False},
    "tags": {"type": "array", "items": {"type": "string"}, "default": '["a"]'},
    "opts": {"type": "object", "properties": {"depth": {"type": "number"}}, "default": "{}"},
    "env": {"type": "string", "oneOf": [{"type": "string", "enum": ["dev", "prod"]}],
            "default": "dev"},
    "note": {"type": "string", "multi_line": True, "default": ""},
    "token": {"type": "string", "secret": True, "default": "from-default"},
}


def _workflow(schema: dict[str, Any] | None = SCHEMA) -> Workflow:
    data: dict[str, Any] = {"version": "1", "nodes": [{"id": "a", "steps": [{"run": "true"}]}]}
    if schema is not None:
        data["params"] = {"schema": schema}
    return Workflow.model_validate(yaml.safe_load(yaml.safe_dump(data)))


DEFAULTS = {"who": "world", "count": 1, "tries": 2, "loud": False, "tags": ["a"],
            "opts": {}, "env": "dev", "note": "", "token": "from-default"}

# given text -> (the value it becomes, or the problem)
TABLE: list[tuple[dict[str, str], dict[str, Any] | str]] = [
    ({}, {}),
    ({"who": "bob"}, {"who": "bob"}),
    ({"who": "123"}, {"who": "123"}),                # a string stays the text
    ({"count": "2.5"}, {"count": 2.5}),
    ({"count": "many"}, "param 'count': \"many\" is not a valid number"),
    ({"tries": "3"}, {"tries": 3}),
    ({"tries": "3.5"}, "param 'tries' is a number (3.5); the schema wants integer"),
    ({"loud": "true"}, {"loud": True}),
    ({"loud": "False"}, {"loud": False}),
    ({"loud": "yes"}, "param 'loud': \"yes\" is not a valid boolean"),
    ({"tags": '["x","y"]'}, {"tags": ["x", "y"]}),
    ({"tags": "[1]"}, "param 'tags'[0] is an integer (1); the schema wants string"),
    ({"opts": '{"depth": 3}'}, {"opts": {"depth": 3}}),
    ({"opts": '{"depth": "deep"}'}, "param 'opts'.depth is a string (\"deep\"); the schema "
                                    "wants number"),
    ({"env": "prod"}, {"env": "prod"}),
    ({"env": "test"}, "param 'env' is \"test\", not one of: dev, prod"),
    ({"note": "line 1\nline 2"}, {"note": "line 1\nline 2"}),
    ({"who": "line 1\nline 2"}, "param 'who' has several lines but is not declared multi_line"),
    ({"token": "hunter2-x"}, {"token": "hunter2-x"}),
    ({"wh": "x"}, "param 'wh' is not declared in params.schema (did you mean 'who'?)"),
]


@pytest.mark.parametrize(("given", "expected"), TABLE, ids=[repr(g) for g, _ in TABLE])
def test_param_table(given: dict[str, str], expected: dict[str, Any] | str) -> None:
    checked = check_params(_workflow(), given)
    if isinstance(expected, str):
        assert checked.problems == [expected]
    else:
        assert checked.problems == []
        assert checked.values == {**DEFAULTS, **expected}
    assert checked.secret == frozenset({"token"})


def test_missing_params_without_default_are_one_problem_each() -> None:
    schema = {"a": {"type": "string"}, "b": {"type": "number"}, "c": {"type": "string",
                                                                     "default": "x"}}
    checked = check_params(_workflow(schema), {})
    assert checked.problems == [
        "param 'a' is required (it has no default): give --param a=VALUE",
        "param 'b' is required (it has no default): give --param b=VALUE"]


def test_a_secret_value_is_never_in_a_problem_and_is_masked() -> None:
    schema = {"pin": {"type": "string", "secret": True,
                      "oneOf": [{"type": "string", "enum": ["1111", "2222"]}]}}
    wf = _workflow(schema)
    checked = check_params(wf, {"pin": "9999-secret"})
    assert checked.problems == ["param 'pin' is not a valid string (value not shown: secret)"]
    ok = check_params(wf, {"pin": "1111"})
    assert ok.masked() == {"pin": "***"} and ok.values == {"pin": "1111"}
    assert secret_names(wf) == secret_names(wf.model_dump(by_alias=True)) == {"pin"}
    assert mask({"pin": "1111", "x": 1}, {"pin"}) == {"pin": "***", "x": 1}


def test_without_a_schema_every_param_passes_as_text() -> None:
    checked = check_params(_workflow(None), {"anything": "1", "else": "x"})
    assert checked.problems == [] and checked.values == {"anything": "1", "else": "x"}
