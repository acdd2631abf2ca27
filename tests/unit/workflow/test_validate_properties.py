"""Property-based tests: whatever the input, loading raises only WorkflowInvalid and validation
returns a Report; a Report that says ok always carries a consistent, acyclic Workflow."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import WorkflowInvalid
from runner.workflow.graph import find_cycles
from runner.workflow.loader import load_text
from runner.workflow.validate import Report, validate_source

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
BASES = [yaml.safe_load((EXAMPLES / n).read_text()) for n in
         ("simple.yaml", "matrix.yaml", "manual-approval.yaml", "templates.yaml")]
KEYS = ["version", "nodes", "id", "steps", "run", "use", "template", "inputs", "depends_on",
        "strategy", "values", "from_state", "type", "matrix", "env", "runtime", "image",
        "trigger", "templates", "state", "schema", "name", "items", "properties", "timeout"]
TEXTS = ["${{ region }}", "${{ params.x || 'd' }}", "${{ tasks.setup.outputs.o }}", "${{",
         "${{ inputs.nope }}", "${{ state.a[0] }}", "docker", "manual", "matrix", "1", "",
         "setup", "hello-world", "array", "${{ a. }}"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.sampled_from(TEXTS), st.text(max_size=12))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6),
                                               children, max_size=5)),
    max_leaves=30)

FAST = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _check(text: str | bytes, source: str) -> Report:
    try:
        load_text(text, source)
    except WorkflowInvalid as exc:
        assert exc.problems  # a typed error always says what is wrong
    report = validate_source(text, source)
    assert isinstance(report, Report)
    if report.ok:
        _consistent(report)
    else:
        assert report.workflow is None and report.errors
    return report


def _consistent(report: Report) -> None:
    workflow = report.workflow
    assert workflow is not None
    ids = [n.id for n in workflow.nodes]
    assert len(ids) == len(set(ids))
    deps = {n.id: list(n.depends_on) for n in workflow.nodes}
    assert all(d in deps for ds in deps.values() for d in ds)
    assert find_cycles(ids, deps) == []
    templates = {t.id for t in workflow.templates}
    for node in workflow.nodes:
        for step in node.steps:
            assert (step.run is None) != (step.use is None)
            if step.use is not None:
                assert step.use.template in templates
        if node.strategy is not None:
            assert (node.strategy.values is None) != (node.strategy.from_state is None)


@FAST
@given(documents)
def test_random_documents_as_yaml_and_json(doc: Any) -> None:
    _check(yaml.safe_dump(doc), "random.yaml")
    _check(json.dumps(doc), "random.json")
    _check(json.dumps({"version": "1", "nodes": doc}), "random")


@FAST
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_random_bytes_and_text(raw: bytes | str) -> None:
    _check(raw, "junk.yaml")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _get(doc, path[:-1]), path[-1]
        action = draw(st.sampled_from(["delete", "retype", "duplicate-node", "cycle",
                                       "rename", "expression"]))
        if action == "delete":
            del parent[key]
        elif action == "retype":
            parent[key] = draw(scalars | st.lists(scalars, max_size=2) | st.just({}))
        elif action == "duplicate-node" and isinstance(doc.get("nodes"), list) and doc["nodes"]:
            doc["nodes"].append(copy.deepcopy(draw(st.sampled_from(doc["nodes"]))))
        elif action == "cycle" and isinstance(doc.get("nodes"), list) and doc["nodes"]:
            node = draw(st.sampled_from(doc["nodes"]))
            other = draw(st.sampled_from(doc["nodes"]))
            if isinstance(node, dict) and isinstance(other, dict):
                node.setdefault("depends_on", [])
                if isinstance(node["depends_on"], list):
                    node["depends_on"].append(other.get("id"))
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = parent.pop(key)
        elif action == "expression":
            parent[key] = draw(st.sampled_from(TEXTS))
    return doc


@FAST
@given(mutated())
def test_mutated_valid_workflows(doc: dict[str, Any]) -> None:
    _check(yaml.safe_dump(doc), "mutated.yaml")
    _check(json.dumps(doc), "mutated.json")


def test_unmutated_bases_are_ok() -> None:
    for base in BASES:
        assert _check(json.dumps(base), "base.json").ok
