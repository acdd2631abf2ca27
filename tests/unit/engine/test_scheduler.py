"""The scheduler as a pure function: (workflow, document) -> ops, runnable tasks, run status."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest

from runner.diff import apply_ops
from runner.document import RunStatus, TaskStatus, new_run
from runner.engine.scheduler import Plan, plan
from tests.unit.engine.engine_support import FIXTURES, by_node, one, workflow

S = TaskStatus


_COUNTER = itertools.count(1)


def ids() -> Any:
    """Deterministic, never-repeating task ids (plan() must use the factory it is given)."""
    return lambda: f"t{next(_COUNTER):06d}"


def fresh_doc(state: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = new_run({}, name="t", params={}, created_at="2024-01-01T00:00:00Z")
    doc["state"] = state or {}
    return doc


def step(wf: Any, doc: dict[str, Any], factory: Any = None) -> Plan:
    """Plan and apply, checking purity (the input document is not modified)."""
    before = copy.deepcopy(doc)
    result = plan(wf, doc, factory or ids())
    assert doc == before, "plan() must not modify the document"
    apply_ops(doc, copy.deepcopy(result.ops))
    return result


def finish(doc: dict[str, Any], task_ids: list[str], status: TaskStatus = S.COMPLETED) -> None:
    for tid in task_ids:
        doc["tasks"][tid]["status"] = status.value


CHAIN = """
version: "1"
nodes:
  - {id: a, steps: [{run: "true"}]}
  - {id: b, depends_on: [a], steps: [{run: "true"}]}
  - {id: c, depends_on: [b], steps: [{run: "true"}]}
"""


def test_chain_runs_one_node_at_a_time_and_completes() -> None:
    wf, doc = workflow(CHAIN), fresh_doc()
    first = step(wf, doc)
    assert len(doc["tasks"]) == 3
    assert first.runnable == [one(doc, "a")["id"]]
    assert first.status == RunStatus.RUNNING
    for node in ("a", "b", "c"):
        result = step(wf, doc)
        assert result.runnable == [one(doc, node)["id"]]
        finish(doc, result.runnable)
    last = step(wf, doc)
    assert last.runnable == [] and last.status == RunStatus.COMPLETED and last.ops == []


def test_failure_blocks_dependents_transitively_and_fails_the_run() -> None:
    wf, doc = workflow(CHAIN), fresh_doc()
    result = step(wf, doc)
    finish(doc, result.runnable, S.FAILED)
    doc["tasks"][result.runnable[0]]["error"] = "step 'x' failed: exit code 3"
    result = step(wf, doc)
    assert one(doc, "b")["status"] == S.BLOCKED and one(doc, "c")["status"] == S.BLOCKED
    assert "upstream node 'a' failed" in one(doc, "b")["error"]
    assert "upstream node 'a' failed" in one(doc, "c")["error"]  # names the root, not b
    assert result.status == RunStatus.FAILED
    assert result.error is not None and "a failed" in result.error and "exit code 3" in result.error


def test_failure_does_not_stop_independent_branch() -> None:
    wf = workflow("""
version: "1"
nodes:
  - {id: a, steps: [{run: "false"}]}
  - {id: b, steps: [{run: "true"}]}
  - {id: c, depends_on: [a], steps: [{run: "true"}]}
""")
    doc = fresh_doc()
    result = step(wf, doc)
    assert set(result.runnable) == {one(doc, "a")["id"], one(doc, "b")["id"]}
    finish(doc, [one(doc, "a")["id"]], S.FAILED)
    doc["tasks"][one(doc, "b")["id"]]["status"] = S.RUNNING.value
    result = step(wf, doc)
    assert result.status == RunStatus.RUNNING  # b still runs: not final yet
    assert one(doc, "c")["status"] == S.BLOCKED
    finish(doc, [one(doc, "b")["id"]])
    assert step(wf, doc).status == RunStatus.FAILED


def test_blocked_task_returns_to_pending_when_the_failure_goes_away() -> None:
    wf, doc = workflow(CHAIN), fresh_doc()
    result = step(wf, doc)
    finish(doc, result.runnable, S.FAILED)
    step(wf, doc)
    assert one(doc, "b")["status"] == S.BLOCKED
    finish(doc, [one(doc, "a")["id"]])  # e.g. a re-run succeeded
    result = step(wf, doc)
    assert one(doc, "b")["status"] == S.PENDING and one(doc, "b")["error"] is None
    assert result.runnable == [one(doc, "b")["id"]]


@pytest.mark.parametrize("fixture", ["examples__manual-workflow.yaml"])
def test_manual_node_awaits_only_after_its_dependencies(fixture: str) -> None:
    wf, doc = workflow(FIXTURES / fixture), fresh_doc()
    result = step(wf, doc)
    # Decision: a manual node awaits its trigger once its dependencies are Completed.
    assert one(doc, "manual-node")["status"] == S.PENDING
    assert result.awaiting == []
    finish(doc, result.runnable)
    result = step(wf, doc)
    manual = one(doc, "manual-node")
    assert manual["status"] == S.AWAITING_TRIGGER
    assert result.awaiting == [manual["id"]] and result.runnable == []
    assert result.status == RunStatus.AWAITING_TRIGGER
    assert one(doc, "final-node")["status"] == S.PENDING
    # A trigger (what Executor.trigger writes) makes it runnable.
    manual["status"], manual["triggered"] = S.PENDING.value, True
    result = step(wf, doc)
    assert result.runnable == [manual["id"]] and result.status == RunStatus.RUNNING
    finish(doc, result.runnable)
    result = step(wf, doc)
    assert result.runnable == [one(doc, "final-node")["id"]]


def test_manual_trigger_on_automatic_node_awaits() -> None:
    wf = workflow(FIXTURES / "derived/engine_create_manual_trigger_workflow.yaml")
    doc = fresh_doc()
    finish(doc, step(wf, doc).runnable)
    result = step(wf, doc)
    assert one(doc, "node2")["status"] == S.AWAITING_TRIGGER
    assert result.status == RunStatus.AWAITING_TRIGGER


def test_awaiting_trigger_wins_over_failure_while_a_branch_can_still_be_triggered() -> None:
    wf = workflow("""
version: "1"
nodes:
  - {id: bad, steps: [{run: "false"}]}
  - {id: gate, type: manual, steps: [{run: "true"}]}
""")
    doc = fresh_doc()
    result = step(wf, doc)
    finish(doc, result.runnable, S.FAILED)
    result = step(wf, doc)
    assert result.status == RunStatus.AWAITING_TRIGGER
    gate = one(doc, "gate")
    gate["status"], gate["triggered"] = S.PENDING.value, True
    finish(doc, step(wf, doc).runnable)
    assert step(wf, doc).status == RunStatus.FAILED


def test_initial_task_counts_match_butterflow() -> None:
    # lib_tests.rs: simple = 2 tasks and 0 masters; values x2 = 4; from_state = a lone master.
    simple = workflow(FIXTURES / "derived/engine_create_test_workflow.yaml")
    doc = fresh_doc()
    step(simple, doc)
    assert len(doc["tasks"]) == 2 and not any(t["master"] for t in doc["tasks"].values())
    matrix = workflow("""
version: "1"
nodes:
  - id: m
    strategy: {type: matrix, values: [{region: us-east}, {region: us-west}]}
    steps: [{run: "true"}]
  - {id: n, steps: [{run: "true"}]}
""")
    doc = fresh_doc()
    step(matrix, doc)
    assert len(doc["tasks"]) == 4
    from_state = workflow("""
version: "1"
nodes:
  - {id: m, strategy: {type: matrix, from_state: files}, steps: [{run: "true"}]}
""")
    doc = fresh_doc()
    step(from_state, doc)
    assert [t["master"] for t in doc["tasks"].values()] == [True]


MATRIX = FIXTURES / "examples__matrix-workflow.yaml"


def test_values_matrix_master_and_children_then_finalize() -> None:
    wf, doc = workflow(MATRIX), fresh_doc()
    result = step(wf, doc)
    tasks = by_node(doc, "process-regions")
    master, children = tasks[0], tasks[1:]
    assert master["master"] and len(children) == 3
    assert {c["matrix"]["region"] for c in children} == {"us-east", "us-west", "eu-central"}
    assert all(c["parent"] == master["id"] for c in children)
    assert [t["id"] for t in result.created[:2]] == [one(doc, "setup")["id"], master["id"]]
    finish(doc, result.runnable)
    result = step(wf, doc)
    assert sorted(result.runnable) == sorted(c["id"] for c in children)
    finish(doc, [children[0]["id"]])
    doc["tasks"][children[1]["id"]]["status"] = S.RUNNING.value
    result = step(wf, doc)
    assert doc["tasks"][master["id"]]["status"] == S.RUNNING
    assert one(doc, "finalize")["status"] == S.PENDING
    finish(doc, [children[1]["id"], children[2]["id"]])
    result = step(wf, doc)
    assert doc["tasks"][master["id"]]["status"] == S.COMPLETED
    assert result.runnable == [one(doc, "finalize")["id"]]
    # Planning again never duplicates children.
    assert len(by_node(doc, "process-regions")) == 4


@pytest.mark.parametrize("children, expected", [
    (["Completed", "Completed"], "Completed"),
    (["Completed", "Failed"], "Failed"),
    (["Running", "Failed"], "Failed"),
    (["Running", "Completed"], "Running"),
    (["AwaitingTrigger", "Completed"], "AwaitingTrigger"),
    (["AwaitingTrigger", "Running"], "Running"),
    (["WontDo", "Completed"], "Completed"),
    (["Pending", "Completed"], "Pending"),
])
def test_master_status_is_derived_from_children(children: list[str], expected: str) -> None:
    kind = "manual" if "AwaitingTrigger" in children else "automatic"
    wf = workflow(f"""
version: "1"
nodes:
  - id: m
    type: {kind}
    strategy: {{type: matrix, values: [{{k: 1}}, {{k: 2}}]}}
    steps: [{{run: "true"}}]
""")
    doc = fresh_doc()
    step(wf, doc)
    master, *kids = by_node(doc, "m")
    for kid, status in zip(kids, children, strict=True):
        kid["status"] = status
    step(wf, doc)
    assert doc["tasks"][master["id"]]["status"] == expected


def test_dependency_needs_every_task_of_the_node_including_master() -> None:
    wf = workflow(MATRIX)
    doc = fresh_doc()
    finish(doc, step(wf, doc).runnable)
    step(wf, doc)
    master, *kids = by_node(doc, "process-regions")
    finish(doc, [k["id"] for k in kids])
    # The master still says Running (derived later): dependents must wait for it.
    doc["tasks"][master["id"]]["status"] = S.RUNNING.value
    result = plan(wf, doc, ids())
    assert one(doc, "finalize")["id"] in result.runnable  # master re-derived in the same pass
    assert any(t.task_id == master["id"] and t.new == "Completed" for t in result.transitions)


FROM_STATE = FIXTURES / "derived/engine_create_matrix_from_state_workflow.yaml"


def test_from_state_missing_key_gives_lone_master_completed_after_deps() -> None:
    wf, doc = workflow(FROM_STATE), fresh_doc()
    result = step(wf, doc)
    (master,) = by_node(doc, "node2")
    assert master["master"] and master["status"] == S.PENDING
    finish(doc, result.runnable)
    result = step(wf, doc)
    assert doc["tasks"][master["id"]]["status"] == S.COMPLETED
    assert result.status == RunStatus.COMPLETED


def test_from_state_reevaluation_adds_new_items_and_wontdo_removed() -> None:
    wf = workflow(FROM_STATE)
    doc = fresh_doc({"files": [{"file": "f1"}, {"file": "f2"}]})
    step(wf, doc)
    assert len(doc["tasks"]) == 4  # node1 + master + f1 + f2, as in Butterflow's test
    doc["state"]["files"] = [{"file": "f1"}, {"file": "f3"}]
    result = step(wf, doc)
    assert len(doc["tasks"]) == 5
    kids = {t["matrix"]["file"]: t for t in by_node(doc, "node2") if not t["master"]}
    assert kids["f2"]["status"] == S.WONT_DO and kids["f1"]["status"] == S.PENDING
    assert kids["f3"]["status"] == S.PENDING
    assert [t["matrix"] for t in result.created] == [{"file": "f3"}]
    # The item comes back: its task is revived, not duplicated.
    doc["state"]["files"] = [{"file": "f1"}, {"file": "f2"}, {"file": "f3"}]
    step(wf, doc)
    assert len(doc["tasks"]) == 5 and doc["tasks"][kids["f2"]["id"]]["status"] == S.PENDING


def test_from_state_running_child_of_removed_item_finishes_then_wontdo() -> None:
    wf = workflow(FROM_STATE)
    doc = fresh_doc({"files": [{"file": "f1"}]})
    finish(doc, step(wf, doc).runnable)
    (kid_id,) = step(wf, doc).runnable
    doc["tasks"][kid_id]["status"] = S.RUNNING.value
    doc["state"]["files"] = []
    step(wf, doc)
    assert doc["tasks"][kid_id]["status"] == S.RUNNING
    finish(doc, [kid_id])
    result = step(wf, doc)
    assert doc["tasks"][kid_id]["status"] == S.WONT_DO
    assert result.status == RunStatus.COMPLETED


def test_from_state_scalar_items_and_non_array_value() -> None:
    wf = workflow(FROM_STATE)
    doc = fresh_doc({"files": ["a.txt", 7]})
    step(wf, doc)
    assert sorted(json.dumps(t["matrix"]) for t in by_node(doc, "node2")[1:]) == [
        '{"item": "a.txt"}', '{"item": 7}']
    doc2 = fresh_doc({"files": {"not": "a list"}})
    finish(doc2, step(wf, doc2).runnable)
    result = step(wf, doc2)
    master = by_node(doc2, "node2")[0]
    assert master["status"] == S.FAILED and "not an array" in master["error"]
    assert result.status == RunStatus.FAILED


def test_orchestration_fixture_state_append_creates_manual_child() -> None:
    wf = workflow(FIXTURES / "doc-docs-workflows_orchestration-matrix-manual.yaml")
    doc = fresh_doc()
    result = step(wf, doc)
    finish(doc, result.runnable)
    doc["state"]["shards"] = [{"team": "core", "shardId": "1"}]
    result = step(wf, doc)
    master, kid = by_node(doc, "matrix-codemod")
    assert kid["matrix"] == {"team": "core", "shardId": "1"}
    assert kid["status"] == S.AWAITING_TRIGGER and master["status"] == S.AWAITING_TRIGGER
    assert result.status == RunStatus.AWAITING_TRIGGER and result.awaiting == [kid["id"]]


def test_cancel_marks_unstarted_tasks_wontdo() -> None:
    wf = workflow(MATRIX)
    doc = fresh_doc()
    finish(doc, step(wf, doc).runnable, S.FAILED)
    doc["cancel_requested"] = True
    result = step(wf, doc)
    assert result.status == RunStatus.CANCELED and result.runnable == []
    statuses = {t["node_id"]: t["status"] for t in doc["tasks"].values()}
    assert statuses["setup"] == S.FAILED
    assert statuses["finalize"] == S.WONT_DO and statuses["process-regions"] == S.WONT_DO


def test_plan_is_linear_in_a_large_matrix() -> None:
    """10,000 children: one pass creates them all as one op list; passes stay cheap enough to
    run (this asserts correctness at scale; speed is measured in bench/)."""
    items = [{"i": i} for i in range(10_000)]
    wf = workflow({"version": "1", "nodes": [
        {"id": "m", "strategy": {"type": "matrix", "values": items}, "steps": [{"run": "true"}]},
        {"id": "after", "depends_on": ["m"], "steps": [{"run": "true"}]},
    ]})
    doc = fresh_doc()
    result = step(wf, doc)
    assert len(result.ops) == 10_002 and len(result.runnable) == 10_000
    finish(doc, result.runnable)
    result = step(wf, doc)
    assert result.runnable == [one(doc, "after")["id"]]
