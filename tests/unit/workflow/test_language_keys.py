"""Upstream's current language in the validator: params and state schemas (both shapes), `if`,
runtimes, templates' runtimes, the kinds and cloud keys Ferry refuses, and unknown keys, which
are warnings for `ferry validate` and errors when a run is made unless purely descriptive."""

from __future__ import annotations

import textwrap

import pytest

from runner.workflow.validate import Report, validate_source


def _report(body: str, *, for_run: bool = False, strict: bool = False) -> Report:
    text = 'version: "1"\n' + textwrap.dedent(body)
    return validate_source(text, "wf.yaml", for_run=for_run, strict=strict)


NODE = """\
nodes:
  - id: a
    steps:
      - run: echo hi
"""

# (name, workflow body, expected errors (fragments), expected warnings (fragments))
CASES = [
    ("state map form", """\
state:
  schema:
    files: {type: array, items: {type: string}}
    count: {type: number}
""" + NODE, [], []),
    ("state list form", """\
state:
  schema:
    - {name: files, type: array, items: {type: string}}
""" + NODE, [], []),
    ("state map: from_state of undeclared key", """\
state:
  schema:
    files: {type: array}
nodes:
  - id: a
    strategy: {type: matrix, from_state: filez}
    steps: [{run: echo}]
""", ["state key 'filez' is not declared in state.schema (did you mean 'files'?)"], []),
    ("state map: from_state of a non-array", """\
state:
  schema:
    n: {type: number}
nodes:
  - id: a
    strategy: {type: matrix, from_state: n}
    steps: [{run: echo}]
""", ["declared as 'number'; a matrix needs an array"], []),
    ("params schema", """\
params:
  schema:
    who: {type: string, default: world}
    n: {type: number, default: 3}
    env: {type: string, oneOf: [{type: string, enum: [dev, prod]}], default: dev}
    token: {type: string, secret: true}
    note: {type: string, multi_line: true, default: ""}
    list: {type: array, items: {type: string}, default: '["a"]'}
""" + NODE, [], []),
    ("param default of the wrong type", """\
params:
  schema:
    n: {type: number, default: abc}
""" + NODE, ["the default is a string (\"abc\"); the schema wants number"], []),
    ("param default outside its enum", """\
params:
  schema:
    env: {type: string, oneOf: [{type: string, enum: [dev, prod]}], default: test}
""" + NODE, ["the default is \"test\", not one of: dev, prod"], []),
    ("string-only keys on a number", """\
params:
  schema:
    n: {type: number, secret: true, default: 1}
""" + NODE, [], ["'secret' only applies to type 'string'"]),
    ("param reference not declared", """\
params:
  schema:
    who: {type: string}
nodes:
  - id: a
    steps:
      - run: echo ${{ params.wh }}
""", ["param 'wh' is not declared in params.schema (did you mean 'who'?)"], []),
    ("param reference with a default is fine", """\
params:
  schema:
    who: {type: string}
nodes:
  - id: a
    steps:
      - run: echo ${{ params.other || 'x' }}
""", [], []),
    ("conditions", """\
nodes:
  - id: a
    steps:
      - {run: echo 1, if: "true"}
      - {run: echo 2, if: false}
      - {run: echo 3, if: 'params.x == "y" && !(state.z > 1)'}
""", [], []),
    ("malformed condition", """\
nodes:
  - id: a
    steps:
      - {run: echo, if: "params.x = 1"}
""", ["condition 'params.x = 1': single '=' is not a comparison"], []),
    ("condition mixing text and ${{ }}", """\
nodes:
  - id: a
    steps:
      - {run: echo, if: "x${{ params.s }}"}
""", ["wrap the whole of it in one '${{ }}'"], []),
    ("condition reading a matrix value outside a matrix", """\
nodes:
  - id: a
    steps:
      - {run: echo, if: "region == 'us'"}
""", ["condition 'region == 'us'': 'region' is read as a matrix value"], []),
    ("condition reading a node that is not upstream", """\
nodes:
  - id: a
    steps:
      - {run: echo, if: "tasks.b.outputs.x"}
  - id: b
    steps: [{run: echo}]
""", ["node 'b' is not upstream of 'a'"], []),
    ("step outputs", """\
nodes:
  - id: a
    steps:
      - run: echo ${{ steps.x.outputs.y }}
""", ["step outputs do not exist"], []),
    ("ai step", """\
nodes:
  - id: a
    steps:
      - ai: {prompt: hi}
""", ["step kind 'ai' is not supported by Ferry"], []),
    ("install-skill step", """\
nodes:
  - id: a
    steps:
      - install-skill: {package: x}
""", ["step kind 'install-skill' is not supported by Ferry"], []),
    ("shard step", """\
nodes:
  - id: a
    steps:
      - shard: {method: {type: directory, max_files_per_shard: 5}, output_state: s}
""", ["built-in shard method requires a non-empty 'target' field",
      "shard step requires either 'file_pattern' or 'js-ast-grep'"], []),
    ("shard step complete", """\
nodes:
  - id: a
    steps:
      - shard: {method: {type: directory, max_files_per_shard: 5}, output_state: s,
                target: src, file_pattern: "**/*.ts"}
""", [], []),
    ("commit checkpoint", """\
nodes:
  - id: a
    steps:
      - run: echo
        commit: {message: m}
""", [], []),
    ("commit checkpoint without a message", """\
nodes:
  - id: a
    steps:
      - run: echo
        commit: {add: [src]}
""", ["missing required property 'message'"], []),
    ("branch and pull request", """\
nodes:
  - id: a
    branch_name: b
    pull_request: {title: t}
    steps: [{run: echo}]
""", [], []),
    ("js-ast-grep path leaving the package", """\
nodes:
  - id: a
    steps:
      - js-ast-grep: {js_file: ../x.ts, include: ["/abs/**"]}
""", ["`js-ast-grep.js_file` must stay within the workspace root",
      "`js-ast-grep.include` must be relative"], []),
    ("runtime keys of containers on the host", """\
nodes:
  - id: a
    runtime: {type: direct, user: "1000", options: ["--cpus=1"]}
    steps: [{run: echo}]
""", ["'user' applies to docker and podman runtimes only",
      "'options' applies to docker and podman runtimes only"], []),
    ("container runtime options", """\
nodes:
  - id: a
    runtime: {type: docker, image: x, working_dir: sub, user: "1000", network: none,
              options: ["--cpus=1"]}
    steps: [{run: echo}]
""", [], []),
    ("template runtime conflicting with the node's", """\
templates:
  - id: t
    runtime: {type: docker, image: x}
    steps: [{run: echo}]
nodes:
  - id: a
    runtime: {type: podman, image: x}
    steps: [{use: {template: t}}]
""", ["template 't' declares a runtime that differs from the one of node 'a'"], []),
    ("template runtime alone is honoured", """\
templates:
  - id: t
    runtime: {type: docker, image: x}
    steps: [{run: echo}]
nodes:
  - id: a
    steps: [{use: {template: t}}, {run: echo}]
""", [], []),
]


@pytest.mark.parametrize(("name", "body", "errors", "warnings"), CASES,
                         ids=[c[0] for c in CASES])
def test_language_case(name: str, body: str, errors: list[str], warnings: list[str]) -> None:
    report = _report(body)
    got_errors = [p.render() for p in report.errors]
    got_warnings = [p.render() for p in report.warnings]
    for fragment in errors:
        assert any(fragment in e for e in got_errors), got_errors
    assert len(got_errors) == len(errors), got_errors
    for fragment in warnings:
        assert any(fragment in w for w in got_warnings), got_warnings
    assert len(got_warnings) == len(warnings), got_warnings


UNKNOWN = """\
nodes:
  - id: a
    description: fine
    x-owner: team-a
    if: "false"
    continue-on-error: true
    retry: {count: 3}
    steps:
      - run: echo
        notes: documentation only
        timeout-minutes: 5
"""


def test_unknown_keys_warn_in_validate_and_stop_a_run_unless_descriptive() -> None:
    keys = {"if", "continue-on-error", "count", "timeout-minutes", "x-owner", "notes"}
    checked = _report(UNKNOWN)
    assert checked.ok
    assert {p.path.rsplit(".", 1)[-1] for p in checked.warnings} == keys
    run = _report(UNKNOWN, for_run=True)
    stopping = {p.path.rsplit(".", 1)[-1] for p in run.errors}
    assert stopping == {"if", "continue-on-error", "count", "timeout-minutes"}
    assert {p.path.rsplit(".", 1)[-1] for p in run.warnings} == {"x-owner", "notes"}
    assert all("Ferry does not know what it does" in p.message for p in run.errors)
    strict = _report(UNKNOWN, strict=True)
    assert {p.path.rsplit(".", 1)[-1] for p in strict.errors} == keys


def test_summary_explains_params() -> None:
    report = _report("""\
params:
  schema:
    who: {type: string, default: world}
    env: {type: string, oneOf: [{type: string, enum: [dev, prod]}]}
    token: {type: string, secret: true, default: hunter2}
""" + NODE)
    line = report.summary.lines()[-1]
    assert line == ('Params: 3 declared: who (string, default "world"); '
                    "env (string, one of dev, prod, required); "
                    "token (string, secret default, secret)")
    assert "hunter2" not in "\n".join(report.summary.lines())
