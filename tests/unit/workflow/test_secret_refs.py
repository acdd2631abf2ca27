"""`ferry validate` knows the `secrets` namespace: allowed in run, env and template inputs,
refused where a value would be shown (names, matrix values, runtime options)."""

from __future__ import annotations

from runner.workflow.expressions import Context, parse_reference, resolve
from runner.workflow.validate import validate_source

WORKFLOW = """\
version: "1"
templates:
  - id: t
    inputs: [{name: tok, default: "${{ secrets.DEFAULT }}"}]
    env: {T: "${{ secrets.TPL_ENV }}"}
    steps: [{run: "echo ${{ secrets.TPL_RUN }}", env: {S: "${{ secrets.TPL_STEP_ENV }}"}}]
nodes:
  - id: ok
    env: {A: "${{ secrets.NODE_ENV }}"}
    steps:
      - run: echo ${{ secrets.RUN }}
        env: {B: "${{ secrets.STEP_ENV }}"}
      - use: {template: t, inputs: {tok: "${{ secrets.INPUT }}"}}
  - id: bad
    name: "deploy ${{ secrets.IN_NAME }}"
    runtime: {type: docker, image: "repo/img:${{ secrets.IN_IMAGE }}"}
    strategy: {type: matrix, values: [{k: "${{ secrets.IN_MATRIX }}"}]}
    steps:
      - name: "step ${{ secrets.IN_STEP_NAME }}"
        run: "true"
"""


def test_secrets_allowed_in_run_env_and_inputs_refused_elsewhere() -> None:
    report = validate_source(WORKFLOW, "wf.yaml")
    refused = sorted(p.path for p in report.errors if "secrets may only" in p.message)
    print("\n".join(refused))
    assert refused == ["nodes[1].name", "nodes[1].runtime.image",
                       "nodes[1].steps[0].name", "nodes[1].strategy.values[0].k"]
    assert len(report.errors) == 4, [p.render() for p in report.errors]


def test_secrets_namespace_resolves_from_the_context_and_names_a_missing_one() -> None:
    assert parse_reference("secrets.TOKEN").namespace == "secrets"
    ctx = Context(secrets={"TOKEN": "abcd1234"})
    assert resolve("x ${{ secrets.TOKEN }} y", ctx) == "x abcd1234 y"
    try:
        resolve("${{ secrets.NOPE }}", ctx, "nodes[0].steps[0].run")
    except Exception as exc:  # ExpressionError
        assert "secrets.NOPE" in str(exc) and "abcd1234" not in str(exc)
    else:
        raise AssertionError("a missing secret must fail")
