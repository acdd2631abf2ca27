"""Template expansion, variable resolution and environment composition of steps."""

from __future__ import annotations

from typing import Any

import pytest

from runner.engine.steps import StepError, argv_for, expand, plain, render, task_env
from runner.errors import ExpressionError
from runner.workflow.expressions import Context
from runner.workflow.model import Workflow
from tests.unit.engine.engine_support import FIXTURES, workflow

TEMPLATED = """
version: "1"
templates:
  - id: checkout
    env: {TPL: t}
    inputs:
      - {name: repo_url, required: true}
      - {name: branch, default: main}
      - {name: depth, default: "${{params.depth}}"}
    steps:
      - name: "Clone ${{inputs.repo_url}}"
        run: git clone --depth ${{inputs.depth}} ${{inputs.repo_url}} -b ${{inputs.branch}}
      - run: echo ${{params.repo_url}}
nodes:
  - id: n
    env: {NODE: "${{params.depth}}"}
    steps:
      - run: echo first
      - name: Checkout
        use:
          template: checkout
          inputs: {repo_url: "${{state.repo}}"}
        env: {STEP: s}
"""


def ctx(**kw: Any) -> Context:
    return Context(**kw)


def test_template_inputs_resolved_in_caller_context_with_defaults() -> None:
    wf = workflow(TEMPLATED)
    c = ctx(params={"depth": "1"}, state={"repo": "https://x/r.git"})
    planned = list(expand(wf, 0, lambda: c))
    assert [p.where for p in planned] == ["nodes[0].steps[0]", "templates[0].steps[0]",
                                          "templates[0].steps[1]"]
    assert planned[1].inputs == {"repo_url": "https://x/r.git", "branch": "main", "depth": "1"}
    first = render(planned[1], 1, lambda: c)
    assert first.script == "git clone --depth 1 https://x/r.git -b main"
    assert first.name == "Checkout / Clone https://x/r.git"
    assert first.env == {"TPL": "t", "STEP": "s"}
    # As in Butterflow, params inside a template see the inputs merged over the run params.
    assert render(planned[2], 2, lambda: c).script == "echo https://x/r.git"


def test_required_template_input_missing_fails_clearly() -> None:
    wf = workflow(TEMPLATED.replace('inputs: {repo_url: "${{state.repo}}"}', "inputs: {}"))
    with pytest.raises(StepError, match="requires input 'repo_url'"):
        list(expand(wf, 0, lambda: ctx(params={"depth": "1"})))


def test_unresolvable_variable_names_the_expression_and_where() -> None:
    wf = workflow(FIXTURES / "examples__node_step_workflow.yaml")
    (planned,) = list(expand(wf, 0, lambda: ctx()))
    with pytest.raises(ExpressionError) as info:
        render(planned, 0, lambda: ctx(params={"branch": "b"}))
    assert "params.test" in str(info.value) and "nodes[0].steps[0].run" in str(info.value)
    ok = render(planned, 0, lambda: ctx(params={"branch": "b", "test": "1234"}))
    assert "Initial params: 1234, b" in ok.script and ok.shebang
    assert ok.script.startswith("#!/usr/bin/env bash")


def test_matrix_values_plain_in_env_and_expressions() -> None:
    wf = workflow(FIXTURES / "examples__matrix-workflow.yaml")
    matrix = {"region": "us-east", "n": 3, "o": {"a": True}}
    c = ctx(matrix=matrix)
    (planned,) = list(expand(wf, 1, lambda: c))
    assert render(planned, 0, lambda: c).script == 'echo "Processing region us-east"'
    env, protected = task_env(wf.nodes[1], 1, matrix, c, run_id="R" * 36, task_id="T" * 36)
    assert {"region", "n", "o", "CODEMOD_PATH", "STATE_OUTPUTS"} <= protected
    assert env["region"] == "us-east" and env["n"] == "3" and env["o"] == '{"a":true}'
    assert env["FERRY_TASK_ID"] == env["CODEMOD_TASK_ID"] == "T" * 36
    assert env["FERRY_RUN_ID"] == env["CODEMOD_WORKFLOW_RUN_ID"] == "R" * 36
    assert env["FERRY_NODE_ID"] == "process-regions"
    assert plain("s") == "s" and plain([1, "a"]) == '[1,"a"]'


def test_node_env_is_resolved() -> None:
    wf = workflow(TEMPLATED)
    env, protected = task_env(wf.nodes[0], 0, None, ctx(params={"depth": "9"}), run_id="r",
                              task_id="t")
    assert env["NODE"] == "9" and "NODE" not in protected
    with pytest.raises(ExpressionError, match=r"nodes\[0\]\.env\.NODE"):
        task_env(wf.nodes[0], 0, None, ctx(), run_id="r", task_id="t")


def test_unsupported_step_kind_is_a_clear_error() -> None:
    wf = Workflow.model_validate({"version": "1", "nodes": [
        {"id": "n", "steps": [{"name": "ask", "ai": {"prompt": "x"}}]}]})
    with pytest.raises(StepError, match="step kind 'ai' is not supported by Ferry"):
        list(expand(wf, 0, lambda: ctx()))


def test_argv_for_shebang_and_plain_scripts() -> None:
    assert argv_for("/c/step-0.sh", True) == ["/c/step-0.sh"]
    assert argv_for("/c/step-0.sh", False) == ["/bin/sh", "-e", "/c/step-0.sh"]
