"""Upstream's language in the engine, with real processes: conditions, template outputs and
runtimes, env precedence, the variables upstream gives steps, the state schema enforced on
writes, matrix outputs, secret params, and re-running a Failed run's failed tasks."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from runner.document import RunStatus, TaskStatus
from runner.engine import events as ev
from runner.engine.steps import task_runtime
from runner.errors import UsageError
from runner.workflow.params import check_params
from tests.unit.engine.engine_support import by_node, make_executor, one, workflow

S = TaskStatus


def run(tmp_path: Path, text: str, params: dict[str, Any] | None = None,
        **settings: Any) -> tuple[RunStatus, dict[str, Any], Any, Any]:
    executor, backend, sink = make_executor(tmp_path)
    if settings:
        from dataclasses import replace

        executor.settings = replace(executor.settings, **settings)
    run_id = executor.create_run(workflow(text), params=params or {})
    status = executor.execute(run_id, threading.Event())
    return status, backend.load(run_id), backend, sink


def log(backend: Any, doc: dict[str, Any], task: dict[str, Any]) -> str:
    return bytes(backend.read_log(doc["id"], task["id"])).decode()


CONDITIONS = """
version: "1"
templates:
  - id: t
    steps:
      - {name: inner-yes, run: echo inner-yes}
      - {name: inner-no, if: 'inputs.mode == "off"', run: echo inner-no}
nodes:
  - id: a
    steps:
      - {name: always, run: echo always}
      - {name: never, if: "false", run: echo never}
      - {name: prod-only, if: 'params.env == "prod"', run: echo prod-only}
      - {name: dev-only, if: "${{ params.env == 'dev' }}", run: echo dev-only}
      - {name: writes, run: 'echo "ready=true" >> "$STATE_OUTPUTS"'}
      - {name: after-write, if: "state.ready", run: echo after-write}
      - {name: tpl, use: {template: t, inputs: {mode: on}}}
      - {name: tpl-skipped, if: "false", use: {template: t, inputs: {mode: on}}}
"""


def test_false_conditions_skip_steps_recorded_and_announced(tmp_path: Path) -> None:
    status, doc, backend, sink = run(tmp_path, CONDITIONS, {"env": "dev"})
    assert status == RunStatus.COMPLETED
    task = one(doc, "a")
    assert log(backend, doc, task).split() == ["always", "dev-only", "after-write",
                                                "inner-yes"]
    assert [(s["name"], s["if"]) for s in task["skipped"]] == [
        ("never", "false"), ("prod-only", 'params.env == "prod"'),
        ("tpl / inner-no", 'inputs.mode == "off"'), ("tpl-skipped", "false")]
    events = sink.of(ev.StepSkipped)
    assert [(e.name, e.condition) for e in events] == [
        (s["name"], s["if"]) for s in task["skipped"]]
    assert [e.index for e in events] == [s["step"] for s in task["skipped"]]


@pytest.mark.parametrize(("condition", "fragment"), [
    ("params.nope", "'params.nope' is not set"),
    ("params.env > 3", "'>' compares numbers or strings"),
    ("state.missing.deep", "'state.missing.deep' is not set"),
])
def test_a_condition_that_cannot_be_evaluated_fails_the_task(tmp_path: Path, condition: str,
                                                             fragment: str) -> None:
    marker = tmp_path / "ws" / "ran"
    status, doc, _, _ = run(tmp_path, f"""
version: "1"
nodes:
  - id: a
    steps:
      - {{name: guarded, if: '{condition}', run: "touch {marker}"}}
""", {"env": "dev"})
    assert status == RunStatus.FAILED and not marker.exists()
    error = one(doc, "a")["error"]
    assert f"condition '{condition}'" in error and fragment in error
    assert "step 'guarded'" in error and "nodes[0].steps[0].if" in error


def test_template_outputs_are_evaluated_and_read_downstream(tmp_path: Path) -> None:
    status, doc, backend, _ = run(tmp_path, """
version: "1"
templates:
  - id: build
    inputs: [{name: target, required: true}]
    steps:
      - run: 'echo "digest=abc123" >> "$STATE_OUTPUTS"'
    outputs:
      - {name: artifact, value: "${{ inputs.target }}-${{ state.digest }}.tar"}
      - {name: undocumented}
nodes:
  - id: make
    steps: [{use: {template: build, inputs: {target: app}}}]
  - id: ship
    depends_on: [make]
    steps: [{run: 'echo "shipping ${{ tasks.make.outputs.artifact }}"'}]
""")
    assert status == RunStatus.COMPLETED
    assert one(doc, "make")["outputs"] == {"artifact": "app-abc123.tar"}
    assert log(backend, doc, one(doc, "ship")) == "shipping app-abc123.tar\n"


ENV = """
version: "1"
templates:
  - id: t
    env: {V_TPL: template, V_USE: template, V_STEP: template, region: template}
    steps:
      - env: {V_STEP: step, region: step, CODEMOD_TASK_ID: step, STATE_OUTPUTS: step}
        run: |
          for v in V_NODE V_TPL V_USE V_STEP region CODEMOD_TASK_ID STATE_OUTPUTS; do
            eval "echo $v=\\$$v"
          done
nodes:
  - id: a
    env: {V_NODE: node, V_TPL: node, V_USE: node, V_STEP: node, region: node}
    strategy: {type: matrix, values: [{region: matrix}]}
    steps:
      - {env: {V_USE: use, V_STEP: use}, use: {template: t}}
"""


def test_env_precedence_node_template_use_step_then_matrix_and_engine(tmp_path: Path) -> None:
    status, doc, backend, _ = run(tmp_path, ENV)
    assert status == RunStatus.COMPLETED
    child = next(t for t in by_node(doc, "a") if not t["master"])
    got = dict(line.split("=", 1) for line in log(backend, doc, child).split())
    table = [("V_NODE", "node"), ("V_TPL", "template"), ("V_USE", "use"), ("V_STEP", "step"),
             ("region", "matrix"), ("CODEMOD_TASK_ID", child["id"])]
    print("\n".join(f"{k:16} {got[k]:40} expected {v}" for k, v in table))
    assert [got[k] for k, _ in table] == [v for _, v in table]
    assert got["STATE_OUTPUTS"].endswith("/state-outputs")


def test_steps_get_codemod_path_and_the_state_as_json(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    status, doc, backend, _ = run(tmp_path, """
version: "1"
nodes:
  - id: a
    steps:
      - run: 'echo "files=[\\"a.ts\\"]" >> "$STATE_OUTPUTS"; echo "path=$CODEMOD_PATH"'
      - run: 'cat "$CODEMOD_STATE"; echo'
""", bundle_dir=bundle)
    assert status == RunStatus.COMPLETED
    lines = log(backend, doc, one(doc, "a")).splitlines()
    assert lines[0] == f"path={bundle}"
    assert json.loads(lines[1]) == {"files": ["a.ts"]}


def test_default_step_names_are_whole_and_never_resolved(tmp_path: Path) -> None:
    script = "echo " + "x" * 50 + " ${{ params.who }} and more text after the expression"
    status, doc, _, sink = run(tmp_path, f"""
version: "1"
nodes:
  - id: a
    steps: [{{run: '{script}'}}]
""", {"who": "bob"})
    assert status == RunStatus.COMPLETED, one(doc, "a")["error"]
    (started,) = sink.of(ev.StepStarted)
    assert started.name == script


SCHEMA_MAP = """
version: "1"
state:
  schema:
    files: {type: array, items: {type: string}}
    count: {type: number}
    label: {type: string}
    config: {type: object, properties: {retries: {type: integer}}}
nodes:
  - id: a
    steps:
      - run: |
          echo '%s' >> "$STATE_OUTPUTS"
"""
SCHEMA_LIST = """
version: "1"
state:
  schema:
    - {name: files, type: array, items: {type: string}}
    - {name: count, type: number}
    - {name: label, type: string}
    - {name: config, type: object, properties: {retries: {type: integer}}}
nodes:
  - id: a
    steps:
      - run: |
          echo '%s' >> "$STATE_OUTPUTS"
"""
WRITES = [  # (line written, expected state or the error fragment)
    ("files@=a.ts", {"files": ["a.ts"]}),
    ("count=3", {"count": 3}),
    ("label=1.2", {"label": "1.2"}),
    ('config={"retries": 2}', {"config": {"retries": 2}}),
    ("files=5", "the value of state key 'files' is an integer (5); the schema wants array"),
    ("files@=7", {"files": ["7"]}),   # read as the declared type: a string
    ('files@={"a": 1}', {"files": ['{"a": 1}']}),  # any text is a string
    ("count=many", "the value of state key 'count' is a string (\"many\"); the schema wants "
                   "number"),
    ("count@=1", "cannot append to state key 'count': the schema declares it number"),
    ('config={"retries": "x"}', "config'.retries is a string"),
    ("undeclared=1", "state key 'undeclared' is not declared in state.schema"),
    ("lable=x", "(did you mean 'label'?)"),
]


@pytest.mark.parametrize("shape", ["map", "list"])
@pytest.mark.parametrize(("line", "expected"), WRITES, ids=[w for w, _ in WRITES])
def test_state_schema_is_enforced_on_every_write(tmp_path: Path, shape: str, line: str,
                                                 expected: Any) -> None:
    text = (SCHEMA_MAP if shape == "map" else SCHEMA_LIST) % line
    status, doc, _, _ = run(tmp_path, text)
    if isinstance(expected, dict):
        assert status == RunStatus.COMPLETED, one(doc, "a")["error"]
        assert doc["state"] == expected
    else:
        assert status == RunStatus.FAILED
        assert doc["state"] == {}
        assert expected in one(doc, "a")["error"], one(doc, "a")["error"]


def test_matrix_outputs_are_a_list_in_item_order(tmp_path: Path) -> None:
    status, doc, backend, _ = run(tmp_path, """
version: "1"
nodes:
  - id: m
    strategy: {type: matrix, values: [{r: c}, {r: a}, {r: b}]}
    steps:
      - run: 'if [ "$r" != b ]; then echo "out=$r-done" >> "$TASK_OUTPUTS"; fi'
  - id: after
    depends_on: [m]
    steps: [{run: "echo '${{ tasks.m.outputs.out }}'"}]
""")
    assert status == RunStatus.COMPLETED
    assert log(backend, doc, one(doc, "after")) == '["c-done","a-done",null]\n'


def test_secret_params_are_masked_in_the_document_and_given_to_steps(tmp_path: Path) -> None:
    wf = workflow("""
version: "1"
params:
  schema:
    token: {type: string, secret: true}
    who: {type: string, default: world}
nodes:
  - id: a
    steps: [{run: 'echo "${{ params.token }}" > secret.txt; echo "hi ${{ params.who }}"'}]
""")
    checked = check_params(wf, {"token": "hunter2-value"})
    assert checked.problems == [] and checked.values == {"token": "hunter2-value",
                                                         "who": "world"}
    executor, backend, _ = make_executor(tmp_path)
    from dataclasses import replace

    executor.settings = replace(executor.settings, secret_params={"token": "hunter2-value"})
    run_id = executor.create_run(wf, params=checked.masked())
    assert executor.execute(run_id, threading.Event()) == RunStatus.COMPLETED
    doc = backend.load(run_id)
    assert doc["params"] == {"token": "***", "who": "world"}
    assert "hunter2" not in json.dumps(doc)
    assert (tmp_path / "ws" / "secret.txt").read_text() == "hunter2-value\n"


def test_a_secret_param_not_given_again_fails_naming_it_never_the_mask(tmp_path: Path) -> None:
    status, doc, _, _ = run(tmp_path, """
version: "1"
params:
  schema:
    token: {type: string, secret: true}
nodes:
  - id: a
    steps: [{run: 'echo "${{ params.token }}"'}]
""", {"token": "***"})
    assert status == RunStatus.FAILED
    assert "params.token" in one(doc, "a")["error"]


RETRY = """
version: "1"
nodes:
  - id: ok
    steps: [{run: 'echo ok >> ok.log'}]
  - id: flaky
    depends_on: [ok]
    steps: [{run: 'echo try >> flaky.log; test -f fixed'}]
  - id: after
    depends_on: [flaky]
    steps: [{run: 'echo after >> after.log'}]
"""


def test_retry_failed_reruns_failed_and_blocked_tasks_and_keeps_completed(
        tmp_path: Path) -> None:
    executor, backend, _ = make_executor(tmp_path)
    ws = tmp_path / "ws"
    run_id = executor.create_run(workflow(RETRY))
    assert executor.execute(run_id, threading.Event()) == RunStatus.FAILED
    with pytest.raises(UsageError, match="is Failed"):
        executor.trigger(run_id, None)
    (ws / "fixed").write_text("")
    reset = executor.retry_failed(run_id)
    doc = backend.load(run_id)
    assert sorted(reset) == sorted([one(doc, "flaky")["id"], one(doc, "after")["id"]])
    assert doc["status"] == "Pending" and doc["error"] is None
    assert executor.execute(run_id, threading.Event()) == RunStatus.COMPLETED
    doc = backend.load(run_id)
    assert (ws / "ok.log").read_text() == "ok\n"              # completed: not run again
    assert (ws / "flaky.log").read_text() == "try\ntry\n"
    assert (ws / "after.log").read_text() == "after\n"
    assert one(doc, "flaky")["attempt"] == 2
    with pytest.raises(UsageError, match="is Completed"):
        executor.retry_failed(run_id)


def test_a_template_runtime_is_the_task_runtime_when_the_node_has_none() -> None:
    wf = workflow("""
version: "1"
templates:
  - id: t
    runtime: {type: docker, image: busybox}
    steps: [{run: echo}]
nodes:
  - id: a
    steps: [{run: echo}, {use: {template: t}}]
  - id: b
    runtime: {type: podman, image: x}
    steps: [{run: echo}]
  - id: c
    steps: [{run: echo}]
""")
    assert [task_runtime(wf, n).type.value for n in wf.nodes] == ["docker", "podman", "direct"]
    assert task_runtime(wf, wf.nodes[0]).image == "busybox"
