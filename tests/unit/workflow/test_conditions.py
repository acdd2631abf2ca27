"""Step conditions (`if:`): upstream's truthiness and operators, and Ferry's refusal of what
cannot be evaluated (upstream skips such a step without a word)."""

from __future__ import annotations

import pytest

from runner.errors import ConditionError
from runner.workflow.conditions import evaluate, parse, truthy
from runner.workflow.expressions import Context

CTX = Context(
    params={"s": "abc", "f": "false", "z": "0", "n": "3", "e": "", "v": "2.1", "t": "true"},
    state={"k": 1, "empty": [], "o": {"a": 1, "b": "x"}, "flag": False, "none": None},
    matrix={"region": "us", "count": 0},
    env={"HOME": "/root", "EMPTY": ""},
    tasks={"build": {"artifact": "app.tar", "ok": "true"}},
    inputs={"who": "bob"},
)

# (condition, whether the step runs) — the rows marked "upstream" were measured against the
# reference engine (Codemod CLI 1.18.3); the others are Ferry's where upstream errors or skips
TABLE = [
    ("true", True), ("false", False), ('"abc"', True), ('"false"', False),      # upstream
    ('""', False), ("0", False), ("1", True), ("null", False),
    ("params.s", True), ("params.f", False), ("params.z", False), ("params.e", False),  # upstream
    ('params.s == "abc"', True), ('params.s != "abc"', False), ("1 < 2", True),  # upstream
    ("${{ params.s }}", True), ('${{ params.s == "abc" }}', True),              # upstream
    ("${{ params.f }}", False), ("${{ params.z }}", False),                      # upstream
    ("params.n > 2", True), ("params.v >= 2.1", True), ("params.v < 2", False),   # upstream
    ('!(params.s == "x")', True), ("state.k", True), ("state.k == 1", True),    # upstream
    ("matrix.region == \"us\"", True), ("state.empty", True), ("state.o", True),  # upstream
    ("params.s == 'abc'", True),        # upstream: single quotes are an error: skipped
    ("'abc'", True),                    # upstream: skipped
    ("!params.f", True),                # upstream: '!' of a string is an error: skipped
    ("params.z == 0", True),            # upstream: Float(0) != Int(0): skipped
    ('params.z == "0"', True),          # upstream: a number is never equal to a string
    ("params.t == true", False),        # a string is never a boolean (as upstream)
    ("state.o.a == 1", True),           # upstream has no nested state paths: skipped
    ("region == 'us'", True),           # a bare name is a matrix value (as in ${{ }})
    ("matrix.count", False), ("env.HOME", True), ("env.EMPTY", False),
    ('tasks.build.outputs.artifact == "app.tar"', True), ("tasks.build.outputs.ok", True),
    ('inputs.who == "bob"', True), ("state.flag || state.k", True),
    ("state.flag && params.nope", False),  # && stops at the first false operand
    ("params.nope || false", False),       # unset on the left of ||: the right side decides
    ("state.o.c || state.k == 1", True), ("!(params.nope || false)", True),
    ("(params.s == 'x' || state.k == 1) && !state.flag", True),
    ('params.s < "b"', True), ("state.none == null", True), ("1 == 1.0", True),
]


@pytest.mark.parametrize(("text", "runs"), TABLE, ids=[t for t, _ in TABLE])
def test_condition_table(text: str, runs: bool) -> None:
    assert evaluate(parse(text), CTX) is runs


ERRORS = [
    ("params.nope", "'params.nope' is not set"),
    ("params.nope && true", "'params.nope' is not set"),
    ("false || params.nope", "'params.nope' is not set"),
    ("state.o.c", "'state.o.c' is not set"),
    ("tasks.other.outputs.x", "no outputs from task 'other'"),
    ("foo bar", "unexpected 'bar'"),
    ("params.s = 'abc'", "single '=' is not a comparison"),
    ("x${{ params.s }}", "wrap the whole of it in one '${{ }}'"),
    ("1 < 2 < 3", "chained comparisons"),
    ("params.s > 1", "'>' compares numbers or strings, not string and integer"),
    ("(params.s", "'(' is never closed"),
    ("", "the condition is empty"),
    ("params.", "unexpected '.'"),
    ("steps.a.outputs.b", "step outputs do not exist"),
    ("params.s ==", "the condition ends where a value was expected"),
]


@pytest.mark.parametrize(("text", "fragment"), ERRORS, ids=[t or "empty" for t, _ in ERRORS])
def test_unevaluable_conditions_raise_naming_the_condition(text: str, fragment: str) -> None:
    with pytest.raises(ConditionError) as info:
        evaluate(parse(text), CTX)
    assert fragment in str(info.value)
    assert f"condition '{text}'" in str(info.value)


def test_references_lists_every_name_in_order() -> None:
    cond = parse("params.a == 1 && (state.b || !matrix.c) || tasks.n.outputs.o")
    assert [r.dotted() for r in cond.references()] == [
        "params.a", "state.b", "matrix.c", "tasks.n.outputs.o"]


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), (None, False), (0, False), (0.0, False), (2, True),
    ("", False), ("false", False), ("False", True), ("x", True), ([], True), ({}, True)])
def test_truthiness_of_values(value: object, expected: bool) -> None:
    assert truthy(value) is expected
