"""The run page's view of a document: the task tree (matrix master then its children, in node
order), statuses shown (a canceled task reads Canceled), skipped steps, the followed task, and
params with secret ones masked."""

from __future__ import annotations

from runner.document import new_run, new_task
from server_stub.web import views


def _doc() -> dict:
    wf = {"version": "1", "nodes": [{"id": "first", "name": "First", "steps": []},
                                     {"id": "fan", "steps": []}]}
    doc = new_run(wf, name="r", params={"region": "eu", "token": "***"},
                  created_at="2026-01-01T00:00:00Z")
    master = new_task("fan", master=True)
    kids = [new_task("fan", parent=master["id"], matrix={"region": r}) for r in ("eu", "us")]
    first = new_task("first")
    first.update(status="Completed", started_at="2026-01-01T00:00:00Z",
                 ended_at="2026-01-01T00:00:02.500Z", skipped=[{"name": "optional"}])
    kids[0].update(status="Running", started_at="2026-01-01T00:00:03Z", attempt=2,
                   interrupted=1)
    kids[1].update(status="Failed", canceled=True, error="stopped during step 1")
    for task in (master, *kids, first):  # stored in any order
        doc["tasks"][task["id"]] = task
    return doc


def test_tree_order_statuses_and_details() -> None:
    doc = _doc()
    tree = views.task_tree(doc)
    shown = [(r.name, r.item, r.status, r.master, r.child) for r in tree]
    print(shown)
    assert shown == [("First", "", "Completed", False, False),
                     ("fan", "", "Pending", True, False),
                     ("fan", "region: eu", "Running", False, True),
                     ("fan", "region: us", "Canceled", False, True)]
    assert tree[0].seconds == 2.5 and tree[0].skipped == ["optional"]
    assert (tree[2].attempt, tree[2].interrupted) == (2, 1)
    assert tree[3].error == "stopped during step 1"
    assert views.auto_task(tree) == tree[2].id
    assert views.node_statuses(doc) == {"first": "Completed", "fan": "Pending"}


def test_secret_params_are_masked() -> None:
    assert views.params_shown({"region": "eu", "token": "***", "n": 3}) == [
        ("region", "eu", False), ("token", "", True), ("n", "3", False)]


def test_graph_is_cached_per_statuses() -> None:
    doc = _doc()
    first = views.graph(doc, "/runs/x")
    assert views.graph(doc, "/runs/x") is first
    doc["tasks"][next(iter(doc["tasks"]))]["status"] = "Completed"
    assert 'class="node st-Completed"' in views.graph(doc, "/runs/x")
