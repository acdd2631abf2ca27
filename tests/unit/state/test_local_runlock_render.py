"""The run lock (released by the kernel when its holder is SIGKILLed) and the status/list
renderings shared with the server commands."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from runner.cli.render import render_paused, render_runs, render_status
from runner.document import TaskStatus, new_run, new_task
from runner.state.backend import RunSummary
from runner.state.runlock import RunLock
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[3]


def test_lock_is_exclusive_and_released_by_sigkill(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from runner.state.runlock import RunLock
        assert RunLock(Path({str(tmp_path)!r}), "run-1").acquire()
        print("held", flush=True)
        time.sleep(300)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        wait_until(lambda: holder.stdout.readline().strip() == "held", timeout=20,
                   message="the child to hold the lock")
        mine = RunLock(tmp_path, "run-1")
        assert mine.is_locked() and not mine.acquire()
        assert mine.holder_pid() == holder.pid
        assert RunLock(tmp_path, "run-2").acquire()  # other runs are independent
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert mine.acquire() and mine.held
        mine.release()
        assert not mine.is_locked()
    finally:
        holder.kill()
        holder.wait(10)


def _doc() -> dict:
    doc = new_run({"version": "1", "nodes": [{"id": "checkout"}, {"id": "codemod",
                                                                   "retry": {"attempts": 3}}]},
                  name="simple-workflow", params={}, created_at="2023-06-15T10:30:45.000Z")
    doc.update(status="AwaitingTrigger", started_at="2023-06-15T10:30:45.120Z")
    checkout = new_task("checkout", status=TaskStatus.COMPLETED)
    checkout["interrupted"] = 1
    master = new_task("codemod", master=True, status=TaskStatus.AWAITING_TRIGGER)
    kids = [new_task("codemod", parent=master["id"], matrix={"team": t},
                     status=TaskStatus.AWAITING_TRIGGER)
            for t in ("frontend", "backend")]
    for task in (kids[0], master, checkout, kids[1]):  # stored order is not display order
        doc["tasks"][task["id"]] = task
    return doc


def test_status_tree_matches_the_seed_layout() -> None:
    doc = _doc()
    tasks = list(doc["tasks"].values())
    kid_front, master, checkout, kid_back = tasks
    lines = render_status(doc)
    assert lines[:3] == [f"Workflow: simple-workflow (ID: {doc['id']})",
                         "Status: AwaitingTrigger", "Started: 2023-06-15T10:30:45Z"]
    tree = lines[lines.index("Tasks:") + 1: lines.index("Tasks:") + 5]
    assert tree == [
        f"- checkout ({checkout['id']}): Completed [interrupted 1x]",
        f"- codemod (master) ({master['id']}): AwaitingTrigger",
        f"  - codemod (team: frontend) ({kid_front['id']}): AwaitingTrigger",
        f"  - codemod (team: backend) ({kid_back['id']}): AwaitingTrigger",
    ]
    triggers = lines[lines.index("Manual triggers required:") + 1:]
    assert triggers == [f"- {kid_front['id']} (codemod, team: frontend)",
                        f"- {kid_back['id']} (codemod, team: backend)"]
    paused = render_paused(doc, "2023-06-15T10:32:30.000Z")
    assert paused[0] == "[2023-06-15T10:32:30Z] Workflow paused: Manual triggers required"
    assert f"Use 'ferry resume -i {doc['id']} --trigger-all' to trigger all tasks" in paused


def test_run_list_layout() -> None:
    runs = [RunSummary("r1", "simple-workflow", "Completed", "2023-06-15T10:30:45Z",
                       "2023-06-15T10:30:45Z", "2023-06-15T10:49:30Z"),
            RunSummary("r2", "manual-workflow", "Failed", "2023-06-13T09:10:15Z",
                       "2023-06-13T09:10:15Z", "2023-06-13T09:16:00Z")]
    assert render_runs(runs) == [
        "Recent workflow runs:",
        "- ID: r1", "  Name: simple-workflow", "  Status: Completed",
        "  Started: 2023-06-15T10:30:45Z", "  Completed: 2023-06-15T10:49:30Z",
        "  Duration: 00:18:45", "",
        "- ID: r2", "  Name: manual-workflow", "  Status: Failed",
        "  Started: 2023-06-13T09:10:15Z", "  Failed: 2023-06-13T09:16:00Z",
        "  Duration: 00:05:45"]
    assert render_runs([]) == ["No workflow runs found."]
