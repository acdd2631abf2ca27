"""Unit tests of `${{ }}` parsing and resolution."""

from __future__ import annotations

import pytest

from runner.errors import ExpressionError
from runner.workflow.expressions import (
    Context,
    Literal,
    Reference,
    evaluate,
    find,
    parse_reference,
    references,
    resolve,
    resolve_value,
    scan,
)

CTX = Context(
    matrix={"region": "us-east", "shard": {"team": "core", "ids": [1, 2]}, "n": 3},
    params={"repo": "https://example.com/r.git", "flag": True},
    env={"CI": "true"},
    state={"files": ["a.txt", "b.txt"], "meta": {"owner": {"name": "ann"}}, "n": 7},
    tasks={"build-step": {"artifact": "out.tar", "count": 2}},
    inputs={"branch": "main"},
)


@pytest.mark.parametrize(
    ("text", "namespace", "path"),
    [
        ("${{region}}", "matrix", ("region",)),
        ("${{ region }}", "matrix", ("region",)),
        ("${{matrix.region}}", "matrix", ("region",)),
        ("${{  params.repo  }}", "params", ("repo",)),
        ("${{env.CI}}", "env", ("CI",)),
        ("${{state.files[1]}}", "state", ("files", 1)),
        ("${{state.meta.owner.name}}", "state", ("meta", "owner", "name")),
        ("${{state.meta['owner']}}", "state", ("meta", "owner")),
        ("${{tasks.build-step.outputs.artifact}}", "tasks", ("build-step", "artifact")),
        ("${{inputs.branch}}", "inputs", ("branch",)),
    ],
)
def test_find_parses_each_namespace(text: str, namespace: str, path: tuple[object, ...]) -> None:
    [expr] = find(f"x {text} y")
    assert expr.ref == Reference(namespace, path)  # type: ignore[arg-type]
    assert expr.source == text
    assert f"x {text} y"[expr.start:expr.end] == text


def test_find_returns_every_expression_in_order() -> None:
    text = "${{a}}-${{ params.b }}-${{state.c}}"
    assert [e.ref.namespace for e in find(text)] == ["matrix", "params", "state"]
    assert [e.ref.head for e in find(text)] == ["a", "b", "c"]


def test_single_brace_and_plain_dollar_are_not_expressions() -> None:
    assert find("echo ${HOME} $region ${ {x} }") == []
    assert references("no expressions here") == []


def test_defaults_parse_as_literals() -> None:
    [expr] = find("${{ params.x || 'fallback' }}")
    assert expr.alternatives == (Reference("params", ("x",)), Literal("fallback"))
    assert expr.has_default
    [expr] = find('${{ params.x || params.y || "z" }}')
    assert [type(a).__name__ for a in expr.alternatives] == ["Reference", "Reference", "Literal"]
    [expr] = find("${{ params.n || 3 }}")
    assert expr.alternatives[1] == Literal(3)


def test_resolve_substitutes_strings_plain_and_other_values_as_json() -> None:
    assert resolve("r=${{region}} n=${{n}}", CTX) == "r=us-east n=3"
    assert resolve("${{ matrix.shard }}", CTX) == '{"team":"core","ids":[1,2]}'
    assert resolve("${{state.files}}", CTX) == '["a.txt","b.txt"]'
    assert resolve("${{state.files[0]}}|${{state.files[-1]}}", CTX) == "a.txt|b.txt"
    assert resolve("${{state.meta.owner.name}}", CTX) == "ann"
    assert resolve("${{params.flag}}", CTX) == "true"
    assert resolve("${{tasks.build-step.outputs.count}}", CTX) == "2"
    assert resolve("${{ inputs.branch }}/${{env.CI}}", CTX) == "main/true"
    assert resolve("no exprs", CTX) == "no exprs"


def test_default_used_only_when_reference_is_missing() -> None:
    assert resolve("${{ params.missing || 'dflt' }}", CTX) == "dflt"
    assert resolve("${{ params.repo || 'dflt' }}", CTX) == "https://example.com/r.git"
    assert resolve("${{ params.missing || inputs.branch }}", CTX) == "main"
    assert resolve("${{ params.missing || null }}", CTX) == "null"


@pytest.mark.parametrize(
    "text",
    [
        "${{params.missing}}",
        "${{state.files[5]}}",
        "${{state.meta.nobody}}",
        "${{tasks.other.outputs.x}}",
        "${{tasks.build-step.outputs.nope}}",
        "${{zone}}",
        "${{ params.a || params.b }}",
    ],
)
def test_unresolvable_raises_typed_error_naming_expression_and_where(text: str) -> None:
    with pytest.raises(ExpressionError) as info:
        resolve(f"echo {text}", CTX, "nodes[1].steps[0].run")
    message = str(info.value)
    assert "nodes[1].steps[0].run" in message
    assert info.value.where == "nodes[1].steps[0].run"
    assert text.removeprefix("${{").removesuffix("}}").strip() in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("${{ params.x ", "never closed"),
        ("${{}}", "empty expression"),
        ("${{ params }}", "params.<name>"),
        ("${{ params. }}", "cannot end with '.'"),
        ("${{ tasks.a.b }}", "tasks.<node>.outputs.<name>"),
        ("${{ 'just a literal' }}", "must reference something"),
        ("${{ a || }}", "empty alternative"),
        ("${{ a + b }}", "unexpected"),
        ("${{ a || 'open }}", "unterminated"),
    ],
)
def test_malformed_expressions_raise_with_reason(text: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        find(text, "nodes[0].env.X")
    assert fragment in str(info.value)
    assert info.value.where == "nodes[0].env.X"
    exprs, error = scan(f"ok ${{{{a}}}} then {text}")
    assert error is not None and fragment in error
    assert [e.ref.head for e in exprs] == ["a"]


def test_evaluate_returns_raw_values() -> None:
    [expr] = find("${{state.files}}")
    assert evaluate(expr, CTX) == ["a.txt", "b.txt"]


def test_resolve_value_walks_containers_and_names_where() -> None:
    value = {"a": ["${{region}}", 1], "b": {"c": "${{params.flag}}"}}
    assert resolve_value(value, CTX, "inputs") == {"a": ["us-east", 1], "b": {"c": "true"}}
    with pytest.raises(ExpressionError) as info:
        resolve_value({"k": ["${{params.nope}}"]}, CTX, "nodes[0].steps[0].use.inputs")
    assert info.value.where == "nodes[0].steps[0].use.inputs.k[0]"


def test_parse_reference_and_dotted_round_trip() -> None:
    for text in ("params.x", "state.a.b[2]", "tasks.n-1.outputs.o", "matrix.k"):
        assert parse_reference(text).dotted() == text
    assert parse_reference("region").dotted() == "matrix.region"
