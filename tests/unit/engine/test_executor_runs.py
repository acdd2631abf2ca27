"""The Executor running real workflows with the real DirectRuntime (in-memory backend)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runner.document import RunStatus, TaskStatus
from runner.engine import events as ev
from runner.errors import UsageError
from tests.unit.engine.engine_support import FIXTURES, by_node, make_executor, one, workflow

S = TaskStatus


def run(tmp_path: Path, text: str | Path, **params: str) -> tuple[RunStatus, dict, object, object]:
    executor, backend, sink = make_executor(tmp_path)
    run_id = executor.create_run(workflow(text), params=params)
    status = executor.execute(run_id, threading.Event())
    return status, backend.load(run_id), backend, sink


def test_step_outputs_fixture_final_state_and_diff_sequence(tmp_path: Path) -> None:
    status, doc, backend, _ = run(tmp_path, FIXTURES / "examples__step_outputs_workflow.yaml")
    assert status == RunStatus.COMPLETED and doc["status"] == "Completed"
    assert doc["state"] == {"env": 123, "asdf": "Hello=there", "Hello": "there", "done": "there"}
    history = backend.history(doc["id"])
    assert [d.seq for d in history] == list(range(1, len(history) + 1))
    assert {d.writer for d in history} == {"local"}
    assert doc["started_at"] and doc["ended_at"] and doc["error"] is None
    assert all(t["attempt"] == 1 and t["ended_at"] for t in doc["tasks"].values())


def test_multi_step_failure_stops_task_blocks_dependents_and_fails_run(tmp_path: Path) -> None:
    marker = tmp_path / "ws" / "third-ran"
    status, doc, backend, sink = run(tmp_path, f"""
version: "1"
nodes:
  - id: build
    steps:
      - {{name: one, run: "echo first"}}
      - {{name: breaks, run: "echo boom; exit 3"}}
      - {{name: three, run: "touch {marker}"}}
  - {{id: test, depends_on: [build], steps: [{{run: "true"}}]}}
  - {{id: deploy, depends_on: [test], steps: [{{run: "true"}}]}}
  - {{id: other, steps: [{{run: "echo independent"}}]}}
""")
    assert status == RunStatus.FAILED
    build = one(doc, "build")
    assert build["status"] == S.FAILED and build["step"] == 1
    assert build["error"] == "step 'breaks' failed: exit code 3"
    assert not marker.exists()
    assert one(doc, "test")["status"] == S.BLOCKED
    assert one(doc, "deploy")["status"] == S.BLOCKED
    assert "upstream node 'build' failed" in one(doc, "deploy")["error"]
    assert one(doc, "other")["status"] == S.COMPLETED
    assert "build failed" in doc["error"]
    assert backend.read_log(doc["id"], build["id"]) == b"first\nboom\n"
    lines = [e.line for e in sink.of(ev.OutputLine) if e.task_id == build["id"]]
    assert lines == ["first", "boom"]
    finished = sink.of(ev.RunFinished)
    assert len(finished) == 1 and finished[0].status == "Failed"


def test_manual_pause_trigger_and_resume(tmp_path: Path) -> None:
    executor, backend, sink = make_executor(tmp_path)
    run_id = executor.create_run(workflow(FIXTURES / "examples__manual-workflow.yaml"))
    assert executor.execute(run_id, threading.Event()) == RunStatus.AWAITING_TRIGGER
    doc = backend.load(run_id)
    manual = one(doc, "manual-node")
    assert doc["status"] == "AwaitingTrigger" and manual["status"] == S.AWAITING_TRIGGER
    assert one(doc, "final-node")["status"] == S.PENDING
    paused = sink.of(ev.RunPaused)
    assert [a[0] for a in paused[-1].awaiting] == [manual["id"]]
    with pytest.raises(UsageError, match="is Completed, not AwaitingTrigger"):
        executor.trigger(run_id, [one(doc, "automatic-node")["id"]])
    with pytest.raises(UsageError, match="unknown task 'nope'"):
        executor.trigger(run_id, ["nope"])
    assert executor.trigger(run_id, [manual["id"][:8]]) == [manual["id"]]
    assert backend.load(run_id)["tasks"][manual["id"]]["triggered"] is True
    assert executor.execute(run_id, threading.Event()) == RunStatus.COMPLETED
    doc = backend.load(run_id)
    assert all(t["status"] == S.COMPLETED for t in doc["tasks"].values())
    assert one(doc, "automatic-node")["attempt"] == 1  # not run again on resume


def test_matrix_values_env_and_codemod_ids(tmp_path: Path) -> None:
    status, doc, backend, sink = run(tmp_path, FIXTURES / "derived/engine_matrix_env_vars.yaml")
    assert status == RunStatus.COMPLETED
    master, *kids = by_node(doc, "matrix-env-test-node")
    assert master["status"] == S.COMPLETED and len(kids) == 2
    for kid in kids:
        log = backend.read_log(doc["id"], kid["id"]).decode()
        assert f"Matrix region: {kid['matrix']['region']}" in log
        assert f"CODEMOD_TASK_ID: {kid['id']}" in log
        assert f"CODEMOD_WORKFLOW_RUN_ID: {doc['id']}" in log
    created = sink.of(ev.MatrixTasksCreated)
    assert len(created) == 1 and created[0].master_id == master["id"]
    assert sorted(c.task_id for c in created[0].children) == sorted(k["id"] for k in kids)
    # All children were created in one diff together with their master.
    creating = [d for d in backend.history(doc["id"])
                if any(op["path"] == f"/tasks/{master['id']}" for op in d.ops)]
    assert len(creating) == 1
    assert all(any(op["path"] == f"/tasks/{k['id']}" for op in creating[0].ops) for k in kids)


def test_env_vars_fixture_and_expressions(tmp_path: Path) -> None:
    fixture = FIXTURES / "derived/engine_create_env_vars_test_workflow.yaml"
    status, doc, backend, _ = run(tmp_path, fixture)
    assert status == RunStatus.COMPLETED
    task = one(doc, "env-test-node")
    log = backend.read_log(doc["id"], task["id"]).decode()
    for expected in (f"CODEMOD_TASK_ID={task['id']}", f"CODEMOD_WORKFLOW_RUN_ID={doc['id']}",
                     "task_id_valid=true", "workflow_run_id_valid=true"):
        assert expected in log


def test_unresolvable_param_fails_setup_naming_the_expression(tmp_path: Path) -> None:
    executor, backend, _ = make_executor(tmp_path, env={"PATH": "/usr/bin:/bin",
                                                        "WORKSPACE": "/w"})
    run_id = executor.create_run(workflow(FIXTURES / "examples__node_step_workflow.yaml"),
                                 params={"branch": "begin"})
    status = executor.execute(run_id, threading.Event())
    doc = backend.load(run_id)
    setup = one(doc, "setup")
    assert status == RunStatus.FAILED and setup["status"] == S.FAILED
    assert "params.test" in setup["error"]
    assert by_node(doc, "process-data")[0]["status"] == S.BLOCKED


def test_unset_host_env_in_node_env_fails_naming_it(tmp_path: Path) -> None:
    # `${{env.X}}` is strict like every other namespace: `${{ env.X || '' }}` makes it optional.
    executor, backend, _ = make_executor(tmp_path, env={"PATH": "/usr/bin:/bin"})
    run_id = executor.create_run(workflow(FIXTURES / "examples__node_step_workflow.yaml"),
                                 params={"branch": "b", "test": "t"})
    assert executor.execute(run_id, threading.Event()) == RunStatus.FAILED
    assert "env.WORKSPACE" in one(backend.load(run_id), "setup")["error"]


def test_node_step_fixture_with_params_completes(tmp_path: Path) -> None:
    executor, backend, _ = make_executor(tmp_path, env={"PATH": "/usr/bin:/bin",
                                                        "WORKSPACE": "/w"})
    wf = workflow((FIXTURES / "examples__node_step_workflow.yaml").read_text()
                  .replace("#!/usr/bin/env python\n", "#!/usr/bin/env python3\n"))
    run_id = executor.create_run(wf, params={"test": "1234", "branch": "begin"})
    assert executor.execute(run_id, threading.Event()) == RunStatus.COMPLETED
    doc = backend.load(run_id)
    setup_log = backend.read_log(run_id, one(doc, "setup")["id"]).decode()
    assert "Initial params: 1234, begin" in setup_log
    report_log = backend.read_log(run_id, one(doc, "generate-report")["id"]).decode()
    # The template's ${{params.*}} see its inputs merged over the run params.
    assert "Cloning repository https://github.com/neovim/neovim branch master" in report_log
    assert "Creating report" in report_log
    assert by_node(doc, "process-data")[0]["status"] == S.COMPLETED  # from_state never set


def test_from_state_reevaluated_during_a_run(tmp_path: Path) -> None:
    done = tmp_path / "ws" / "done"
    executor, backend, _ = make_executor(tmp_path)
    run_id = executor.create_run(workflow(f"""
version: "1"
nodes:
  - id: first
    steps: [{{run: "echo 'files=[{{\\"f\\":\\"a\\"}},{{\\"f\\":\\"b\\"}}]' >> $STATE_OUTPUTS"}}]
  - id: second
    depends_on: [first]
    steps:
      - run: |
          echo 'files=[{{"f":"a"}}]' >> $STATE_OUTPUTS
          echo 'files@={{"f":"c"}}' >> $STATE_OUTPUTS
  - id: each
    trigger: {{type: manual}}
    strategy: {{type: matrix, from_state: files}}
    steps: [{{run: "mkdir -p {done} && touch {done}/$f-${{{{matrix.f}}}}"}}]
"""))
    assert executor.execute(run_id, threading.Event()) == RunStatus.AWAITING_TRIGGER
    doc = backend.load(run_id)
    assert doc["state"]["files"] == [{"f": "a"}, {"f": "c"}]
    kids = {t["matrix"]["f"]: t for t in by_node(doc, "each") if not t["master"]}
    assert set(kids) == {"a", "b", "c"}
    assert kids["b"]["status"] == S.WONT_DO
    assert kids["a"]["status"] == kids["c"]["status"] == S.AWAITING_TRIGGER
    assert sorted(executor.trigger(run_id, None)) == sorted([kids["a"]["id"], kids["c"]["id"]])
    assert executor.execute(run_id, threading.Event()) == RunStatus.COMPLETED
    assert sorted(p.name for p in done.iterdir()) == ["a-a", "c-c"]
    doc = backend.load(run_id)
    assert by_node(doc, "each")[0]["status"] == S.COMPLETED


def test_task_outputs_reach_dependents(tmp_path: Path) -> None:
    status, doc, backend, _ = run(tmp_path, """
version: "1"
nodes:
  - id: produce
    steps:
      - run: |
          echo 'version=1.2.3' >> $TASK_OUTPUTS
          printf 'notes<<EOF\\nline 1\\nline 2\\nEOF\\n' >> $TASK_OUTPUTS
  - id: consume
    depends_on: [produce]
    env: {V: "${{ tasks.produce.outputs.version }}"}
    steps: [{run: "echo \\"v=$V\\"; echo '${{tasks.produce.outputs.notes}}'"}]
""")
    assert status == RunStatus.COMPLETED
    assert one(doc, "produce")["outputs"] == {"version": "1.2.3", "notes": "line 1\nline 2"}
    log = backend.read_log(doc["id"], one(doc, "consume")["id"]).decode()
    assert log == "v=1.2.3\nline 1\nline 2\n"


def test_malformed_outputs_line_fails_the_task(tmp_path: Path) -> None:
    status, doc, _, _ = run(tmp_path, """
version: "1"
nodes:
  - id: bad
    steps: [{run: "echo 'this is not an assignment' >> $STATE_OUTPUTS"}]
""")
    assert status == RunStatus.FAILED
    assert "STATE_OUTPUTS line 1" in one(doc, "bad")["error"]
    assert "this is not an assignment" in one(doc, "bad")["error"]


def test_shebang_script_runs_with_its_interpreter(tmp_path: Path) -> None:
    status, doc, backend, _ = run(tmp_path, """
version: "1"
nodes:
  - id: py
    steps:
      - run: |
          #!/usr/bin/env python3
          import os
          print("task", len(os.environ["FERRY_TASK_ID"]))
""")
    assert status == RunStatus.COMPLETED
    assert backend.read_log(doc["id"], one(doc, "py")["id"]) == b"task 36\n"


def test_missing_runtime_fails_the_task_with_one_line(tmp_path: Path) -> None:
    status, doc, _, _ = run(tmp_path, """
version: "1"
nodes:
  - {id: boxed, runtime: {type: docker, image: busybox}, steps: [{run: "true"}]}
""")
    assert status == RunStatus.FAILED
    assert one(doc, "boxed")["error"] == "runtime 'docker' is not available on this runner"


def test_max_parallel_bounds_concurrency(tmp_path: Path) -> None:
    executor, _backend, _ = make_executor(tmp_path, max_parallel=2)
    slots = tmp_path / "slots"
    slots.mkdir()
    seen = tmp_path / "seen"
    script = (f"mkdir {slots}/$FERRY_TASK_ID; ls {slots} | wc -l >> {seen}; sleep 0.2;"
              f" rmdir {slots}/$FERRY_TASK_ID")
    items = ", ".join(f"{{i: {i}}}" for i in range(5))
    run_id = executor.create_run(workflow(f"""
version: "1"
nodes:
  - id: m
    strategy: {{type: matrix, values: [{items}]}}
    steps: [{{run: "{script}"}}]
"""))
    assert executor.execute(run_id, threading.Event()) == RunStatus.COMPLETED
    counts = [int(x) for x in seen.read_text().split()]
    assert len(counts) == 5 and max(counts) <= 2
