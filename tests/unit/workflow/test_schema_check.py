"""The pydantic-free schema check agrees with the models: whatever it accepts builds a Workflow,
and tricky scalars (bool vs int, nullable fields, unions) are judged like pydantic judges them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from runner.workflow.model import Workflow
from runner.workflow.schema import data_module_text
from runner.workflow.schema_check import errors
from runner.workflow.schema_data import SCHEMA

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]


def _node(**extra: Any) -> dict[str, Any]:
    return {"version": "1", "nodes": [{"id": "a", "steps": [{"run": "x"}], **extra}]}


@pytest.mark.parametrize(
    "doc",
    [
        _node(),
        {"version": 1, "nodes": [{"id": "a", "steps": []}]},
        {"version": 1.0, "nodes": [{"id": "a", "steps": []}]},
        {"version": "1.0.0", "nodes": [{"id": "a", "steps": []}]},
        _node(env={"N": 1, "B": True, "S": "s"}),
        _node(runtime={"type": "docker", "image": "x", "memory": 512, "cpus": 1}),
        _node(runtime={"type": "podman", "image": "x", "memory": "1g", "cpus": 0.5}),
        _node(timeout="10m", retry={"attempts": 3, "backoff": 2}),
        _node(strategy={"type": "matrix", "values": [{"a": 1}]}),
        _node(name=None, description=None, trigger={"type": "manual"}),
    ],
)
def test_accepted_documents_build_the_model(doc: dict[str, Any]) -> None:
    assert list(errors(doc)) == []
    Workflow.model_validate(doc)


@pytest.mark.parametrize(
    ("doc", "path", "fragment"),
    [
        ({"version": True, "nodes": [{"id": "a", "steps": []}]}, ("version",), "Input should"),
        ({"version": "2", "nodes": [{"id": "a", "steps": []}]}, ("version",), "Input should"),
        (_node(type="often"), ("nodes", 0, "type"), "'automatic' or 'manual'"),
        (_node(retry={"attempts": 0}), ("nodes", 0, "retry", "attempts"), "greater than or"),
        (_node(runtime={"cpus": "two"}), ("nodes", 0, "runtime", "cpus"), "valid number"),
        (_node(timeout=[1]), ("nodes", 0, "timeout"), "a valid string or a valid number"),
        (_node(strategy={"type": "grid"}), ("nodes", 0, "strategy", "type"), "'matrix'"),
        (_node(depends_on="b"), ("nodes", 0, "depends_on"), "valid list"),
        (_node(id=""), ("nodes", 0, "id"), "at least 1 character"),
        ({"version": "1", "nodes": []}, ("nodes",), "at least 1 item"),
        ({"nodes": [{"id": "a"}]}, (), "missing required property 'version'"),
    ],
)
def test_rejected_documents_are_rejected_by_pydantic_too(
        doc: dict[str, Any], path: tuple[Any, ...], fragment: str) -> None:
    found = list(errors(doc))
    assert any(p == path and fragment in m for p, m in found), found
    with pytest.raises(ValidationError):
        Workflow.model_validate(doc)


def test_schema_data_module_is_current() -> None:
    current = (ROOT / "runner" / "workflow" / "schema_data.py").read_text(encoding="utf-8")
    assert current == data_module_text(), "run `python -m runner.workflow.schema`"
    assert SCHEMA["$schema"].endswith("2020-12/schema")
