"""Semantic validation: every problem at once, each with its path and line."""

from __future__ import annotations

import textwrap

import pytest

from runner.errors import Problem
from runner.workflow.validate import Report, validate_source


def _validate(text: str, strict: bool = False) -> Report:
    return validate_source(textwrap.dedent(text), "wf.yaml", strict=strict)


def _errors(text: str, strict: bool = False) -> list[Problem]:
    return _validate(text, strict).errors


def _one(text: str, fragment: str, strict: bool = False) -> Problem:
    matches = [p for p in _errors(text, strict) if fragment in p.message]
    assert len(matches) == 1, _errors(text, strict)
    return matches[0]


VALID = """\
version: "1"
state:
  schema:
    - name: shards
      type: array
      items:
        type: object
        properties:
          team: {type: string}
    - name: count
      type: number
templates:
  - id: greet
    inputs:
      - {name: who, required: true}
      - {name: punct, default: "!"}
    steps:
      - run: echo hello ${{ inputs.who }}${{inputs.punct}}
  - id: other
    steps:
      - run: "true"
nodes:
  - id: a
    steps:
      - use: {template: greet, inputs: {who: world}}
      - run: echo "art=x" >> $TASK_OUTPUTS
  - id: b
    depends_on: [a]
    strategy: {type: matrix, values: [{region: us}, {region: eu}]}
    steps:
      - run: echo ${{region}} ${{ matrix.region }} ${{tasks.a.outputs.art}}
  - id: c
    depends_on: [b]
    trigger: {type: manual}
    strategy: {type: matrix, from_state: shards}
    steps:
      - use: {template: greet, inputs: {who: "${{team}}"}}
      - run: echo ${{ tasks.a.outputs.art }} ${{ state.count }} ${{params.x || 'd'}}
"""


def test_valid_workflow_summary_counts() -> None:
    report = _validate(VALID)
    assert report.ok, report.problems
    assert report.workflow is not None and len(report.workflow.nodes) == 3
    assert report.summary.lines() == [
        "Schema validation: Passed",
        "Node dependencies: Valid (3 nodes, 2 dependency relationships)",
        "Template references: Valid (2 templates, 2 references)",
        "Matrix strategies: Valid (2 matrix nodes)",
        "State schema: Valid (2 schema definitions)",
    ]


def test_seed_multi_issue_example_reports_everything_at_once() -> None:
    report = _validate("""\
        version: "1"
        nodes:
          - id: node-a
            depends_on: [node-b]
            steps:
              - run: echo a
              - use: {template: non-existent-template}
          - id: node-b
            depends_on: [non-existent-node, node-a]
            steps: [{run: echo b}]
          - id: node-c
            strategy: {type: matrix}
            steps: [{run: echo c}]
        """)
    rendered = [p.render() for p in report.errors]
    assert rendered == [
        "Error: Cyclic dependency detected: node-a → node-b → node-a (line 3)",
        "Error at nodes[0].steps[1].use.template: Referenced template 'non-existent-template' "
        "does not exist (line 7)",
        "Error at nodes[1].depends_on[0]: Referenced node 'non-existent-node' does not exist "
        "(line 9)",
        "Error at nodes[2].strategy: Matrix strategy requires 'values' or 'from_state' property "
        "(line 12)",
    ]


def test_cycle_path_is_deterministic_and_follows_depends_on() -> None:
    text = """\
        version: "1"
        nodes:
          - {id: node-a, depends_on: [node-b], steps: []}
          - {id: node-b, depends_on: [node-c], steps: []}
          - {id: node-c, depends_on: [node-a], steps: []}
          - {id: solo, depends_on: [solo], steps: []}
        """
    messages = [p.message for p in _errors(text)]
    assert messages == ["Cyclic dependency detected: node-a → node-b → node-c → node-a",
                        "Cyclic dependency detected: solo → solo"]


def test_duplicate_ids() -> None:
    text = """\
        version: "1"
        templates:
          - {id: t, steps: []}
          - {id: t, steps: []}
        nodes:
          - id: a
            steps: [{id: s, run: x}, {id: s, run: y}]
          - {id: a, steps: []}
        """
    assert _one(text, "Duplicate node ID 'a'").path == "nodes[1].id"
    assert _one(text, "Duplicate template ID 't'").path == "templates[1].id"
    assert _one(text, "Duplicate step ID 's'").path == "nodes[0].steps[1].id"


def test_dependency_typo_gets_did_you_mean() -> None:
    text = """\
        version: "1"
        nodes:
          - {id: build, steps: []}
          - {id: test, depends_on: [biuld], steps: []}
        """
    problem = _one(text, "does not exist")
    assert problem.path == "nodes[1].depends_on[0]" and "did you mean 'build'?" in problem.message
    assert problem.line == 4


@pytest.mark.parametrize(
    ("strategy", "fragment", "path"),
    [
        ("{type: matrix}", "requires 'values' or 'from_state'", "nodes[0].strategy"),
        ("{type: matrix, values: [{a: 1}], from_state: s}", "not both", "nodes[0].strategy"),
        ("{type: matrix, values: [us-east]}", "must be a mapping", "nodes[0].strategy.values[0]"),
        ("{type: matrix, from_state: shardz}", "not declared in state.schema (did you mean "
         "'shards'?)", "nodes[0].strategy.from_state"),
        ("{type: matrix, from_state: scalar}", "a matrix needs an array",
         "nodes[0].strategy.from_state"),
    ],
)
def test_matrix_strategy_problems(strategy: str, fragment: str, path: str) -> None:
    text = f"""\
        version: "1"
        state:
          schema: [{{name: shards, type: array}}, {{name: scalar, type: string}}]
        nodes:
          - id: n
            strategy: {strategy}
            steps: [{{run: echo}}]
        """
    assert _one(text, fragment).path == path


def test_unsupported_step_kinds_one_error_each() -> None:
    text = """\
        version: "1"
        nodes:
          - id: n
            steps:
              - {name: a, ai: {prompt: x}}
              - {name: b, install-skill: {package: x}}
              - {name: c, codemod: {source: x}}
              - {name: d, js-ast-grep: {js_file: x.js}}
        """
    errors = _errors(text)
    assert [p.message.split(" is not")[0] for p in errors] == [
        "step kind 'ai'", "step kind 'install-skill'"]
    assert all("not supported by Ferry" in p.message for p in errors)
    assert [p.path for p in errors] == ["nodes[0].steps[0].ai",
                                        "nodes[0].steps[1].install-skill"]


def test_step_needs_exactly_one_action_and_legacy_keys_explained() -> None:
    text = """\
        version: "1"
        templates: [{id: t, steps: []}]
        nodes:
          - id: n
            steps:
              - {name: nothing}
              - {run: x, use: {template: t}}
              - {uses: [{template: t}]}
              - {commands: [ls]}
        """
    assert _one(text, "needs 'run' or 'use'").path == "nodes[0].steps[0]"
    assert _one(text, "exactly one of").path == "nodes[0].steps[1]"
    assert _one(text, "'uses' is not Butterflow v1").path == "nodes[0].steps[2].uses"
    assert _one(text, "'commands' is legacy").path == "nodes[0].steps[3].commands"


def test_template_inputs_required_and_declared() -> None:
    text = """\
        version: "1"
        templates:
          - id: t
            inputs: [{name: repo, required: true}, {name: ref, required: true, default: main}]
            steps:
              - run: git clone ${{inputs.repo}} && git checkout ${{ inputs.branch }}
        nodes:
          - id: n
            steps: [{use: {template: t, inputs: {reop: x}}}]
        """
    report = _validate(text)
    missing = _one(text, "requires input 'repo'")
    assert missing.path == "nodes[0].steps[0].use.inputs"
    undeclared = _one(text, "declares no input 'branch'")
    assert undeclared.path == "templates[0].steps[0].run"
    [warning] = [w for w in report.warnings if "reop" in w.message]
    assert "did you mean 'repo'?" in warning.message


def test_task_outputs_must_come_from_upstream_nodes() -> None:
    text = """\
        version: "1"
        templates:
          - id: t
            steps: [{run: "echo ${{tasks.late.outputs.v}}"}]
        nodes:
          - {id: first, steps: [{run: echo}]}
          - id: mid
            depends_on: [first]
            steps: [{run: "echo ${{tasks.first.outputs.v}}"}]
          - id: late
            depends_on: [mid]
            steps:
              - run: >-
                  echo ${{tasks.first.outputs.v}} ${{tasks.side.outputs.v}}
                  ${{tasks.ghost.outputs.v}}
          - id: side
            steps: [{use: {template: t}}, {run: "echo ${{tasks.side.outputs.v}}"}]
        """
    errors = _errors(text)
    by_fragment = {
        "'side' is not upstream of 'late'": "nodes[2].steps[0].run",
        "node 'ghost' does not exist": "nodes[2].steps[0].run",
        "in template 't'): node 'late' is not upstream of 'side'": "nodes[3].steps[0].use",
        "cannot read its own outputs": "nodes[3].steps[1].run",
    }
    for fragment, path in by_fragment.items():
        assert [p.path for p in errors if fragment in p.message] == [path], errors
    assert len(errors) == 4  # transitive upstream (late reads first through mid) is fine


def test_matrix_and_inputs_references_outside_their_scope() -> None:
    text = """\
        version: "1"
        nodes:
          - id: plain
            steps: [{run: "echo ${{region}} ${{ inputs.x }} ${{ zone || 'z' }}"}]
          - id: mat
            strategy: {type: matrix, values: [{region: us}]}
            steps: [{run: "echo ${{regoin}}"}]
        """
    assert "has no matrix strategy" in _one(text, "'region' is read as a matrix value").message
    assert _one(text, "only exist inside a template").path == "nodes[0].steps[0].run"
    assert "did you mean 'region'?" in _one(text, "no matrix value").message


def test_malformed_expression_located() -> None:
    text = """\
        version: "1"
        nodes:
          - id: n
            env: {A: "${{ params.x "}
            steps: [{run: "echo ${{ a. }}"}]
        """
    assert _one(text, "never closed").path == "nodes[0].env.A"
    assert _one(text, "cannot end with '.'").path == "nodes[0].steps[0].run"


def test_runtime_image_and_durations() -> None:
    text = """\
        version: "1"
        templates: [{id: t, runtime: {type: podman}, steps: []}]
        nodes:
          - id: n
            runtime: {type: docker}
            timeout: 10x
            retry: {attempts: 2, backoff: 5s}
            steps: [{run: x, timeout: 0}]
        """
    assert _one(text, "runtime 'docker' requires an 'image'").path == "nodes[0].runtime"
    assert _one(text, "runtime 'podman' requires").path == "templates[0].runtime"
    assert _one(text, "'10x' is not a duration").path == "nodes[0].timeout"
    assert _one(text, "greater than zero").path == "nodes[0].steps[0].timeout"


def test_unknown_keys_warn_with_hint_and_fail_under_strict() -> None:
    text = """\
        version: "1"
        nodes:
          - id: n
            depend_on: [x]
            steps: [{run: echo, envv: {}}]
        """
    report = _validate(text)
    assert report.ok
    messages = {w.path: w.message for w in report.warnings}
    assert messages["nodes[0].depend_on"] == "unknown key 'depend_on' (did you mean 'depends_on'?)"
    assert messages["nodes[0].steps[0].envv"] == "unknown key 'envv' (did you mean 'env'?)"
    strict = _validate(text, strict=True)
    assert not strict.ok and {p.path for p in strict.errors} == set(messages)


def test_schema_errors_mapped_to_paths_and_lines() -> None:
    text = """\
        version: "2"
        nodes:
          - id: n
            type: sometimes
            steps: 5
          - name: no id
            steps: []
        """
    errors = {p.path: p for p in _errors(text)}
    assert "unsupported version '2'" in errors["version"].message
    assert errors["version"].line == 1
    assert "'automatic' or 'manual'" in errors["nodes[0].type"].message
    assert errors["nodes[0].type"].line == 4
    assert "valid list" in errors["nodes[0].steps"].message
    assert errors["nodes[1]"].message == "missing required property 'id'"
    assert errors["nodes[1]"].line == 6


def test_versions_accepted() -> None:
    for version in ("1", "1.0", "1.0.0", "1"):
        assert _validate(f'version: "{version}"\nnodes: [{{id: a, steps: []}}]\n').ok
    assert _validate("version: 1\nnodes: [{id: a, steps: []}]\n").ok


def test_json_problems_have_lines() -> None:
    text = '{"version": "1",\n "nodes": [\n  {"id": "a", "depends_on": ["zz"], "steps": []}]}'
    report = validate_source(text, "wf.json")
    [error] = report.errors
    assert error.path == "nodes[0].depends_on[0]" and error.line == 3


@pytest.mark.parametrize(("env", "fragment"), [
    ('{"A=B": x}', "name cannot be empty or hold '='"),
    ('{"": x}', "name cannot be empty or hold '='"),
    ('{A: "x\\0y"}', "value cannot hold a NUL byte"),
])
def test_env_no_process_could_receive_is_refused_with_its_place(env: str, fragment: str) -> None:
    problem = _one(f"""\
        version: "1"
        nodes:
          - id: a
            env: {env}
            steps:
              - run: "true"
        """, fragment)
    assert problem.path.startswith("nodes[0].env")
    assert problem.line == 4
    assert not problem.message.startswith("Value error")
