"""The local commands through the real CLI: bad input leaves the database untouched, status,
list and logs output, --json, run id prefixes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.local.conftest import REPO, Ferry

HELLO = str(REPO / "examples" / "hello.yaml")
GATE = str(REPO / "examples" / "approval-gate.yaml")


def _one_line_error(proc_stderr: str, *words: str) -> None:
    lines = proc_stderr.strip().splitlines()
    assert len(lines) == 1, proc_stderr
    assert "Traceback" not in proc_stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def paused(ferry: Ferry) -> str:
    proc = ferry("run", "-w", GATE)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    return ferry.run_id(proc.stdout)


def test_bad_input_exits_2_and_changes_nothing(ferry: Ferry, paused: str) -> None:
    doc = ferry.doc(paused)
    build = ferry.by_node(doc)["build"][0]["id"]
    before = ferry.db_dump()
    cases = [
        (("resume", "-i", "0000dead"), ["unknown run id", "0000dead"]),
        (("status", "-i", "nope-nope"), ["unknown run id"]),
        (("resume", "-i", paused, "-t", "ffffffff-0000"), ["unknown task", paused]),
        (("resume", "-i", paused, "-t", build), [build, "Completed", "not AwaitingTrigger"]),
        (("resume", "-i", paused, "-t", "deploy"), ["Pending", "not AwaitingTrigger"]),
        (("run", "-w", "missing.yaml"), ["workflow file not found", "missing.yaml"]),
        (("run", "-w", HELLO, "--param", "novalue"),
         ["Invalid parameter format: novalue. Expected format: key=value"]),
        (("list", "--status", "Sleeping"), ["unknown status", "Sleeping"]),
        (("logs", "-i", paused, "-t", "nosuchtask"), ["unknown task"]),
    ]
    for args, words in cases:
        proc = ferry(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        _one_line_error(proc.stderr, *words)
        assert ferry.db_dump() == before, f"{args} changed the database"


def test_resume_completed_run_is_refused(ferry: Ferry) -> None:
    run_id = ferry.run_id(ferry("run", "-w", HELLO).stdout)
    before = ferry.db_dump()
    proc = ferry("resume", "-i", run_id, "--trigger-all")
    assert proc.returncode == 2
    _one_line_error(proc.stderr, run_id, "already Completed")
    cancel = ferry("cancel", "-i", run_id)
    assert cancel.returncode == 2
    assert ferry.db_dump() == before


def test_param_splits_at_first_equals(ferry: Ferry, tmp_path: Path) -> None:
    wf = tmp_path / "p.yaml"
    wf.write_text('version: "1"\nnodes:\n  - id: show\n    steps:\n'
                  '      - run: echo "url=${{params.url}}"\n')
    proc = ferry("run", "-w", str(wf), "--param", "url=https://x.test/?a=b&c=d")
    assert proc.returncode == 0, proc.stderr
    assert "  [show] url=https://x.test/?a=b&c=d" in proc.stdout


def test_invalid_workflow_lists_problems_exit_2(ferry: Ferry, tmp_path: Path) -> None:
    wf = tmp_path / "bad.yaml"
    wf.write_text('version: "1"\nnodes:\n  - id: a\n    depends_on: [ghost]\n'
                  '    steps:\n      - run: "true"\n')
    proc = ferry("run", "-w", str(wf))
    assert proc.returncode == 2
    assert "ghost" in proc.stderr and "Traceback" not in proc.stderr
    assert not ferry.db.exists() or ferry("list", "--json").stdout.strip() == "[]"


def test_status_tree_and_triggers(ferry: Ferry, paused: str) -> None:
    proc = ferry("status", "-i", paused[:8])  # a unique prefix is enough
    assert proc.returncode == 0
    doc = ferry.doc(paused)
    approve = ferry.by_node(doc)["approve"][0]["id"]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"Workflow: approval-gate (ID: {paused})"
    assert lines[1] == "Status: AwaitingTrigger"
    assert f"- approve ({approve}): AwaitingTrigger" in lines
    assert lines[lines.index("Manual triggers required:") + 1] == f"- {approve} (approve)"
    history = ferry("status", "-i", paused, "--history").stdout
    assert "History:" in history and "task approve: status = AwaitingTrigger" in history
    both = json.loads(ferry("status", "-i", paused, "--json", "--history").stdout)
    assert both["run"]["id"] == paused and both["history"][0]["seq"] == 1


def test_list_and_filters(ferry: Ferry, paused: str) -> None:
    done = ferry.run_id(ferry("run", "-w", HELLO).stdout)
    out = ferry("list").stdout.splitlines()
    assert out[0] == "Recent workflow runs:"
    assert out[1] == f"- ID: {done}"  # newest first
    assert f"- ID: {paused}" in out
    assert "  Status: AwaitingTrigger" in out and "  Completed: " in "\n".join(out)
    rows = json.loads(ferry("list", "--json", "--status", "awaitingtrigger").stdout)
    assert [r["id"] for r in rows] == [paused]
    assert len(json.loads(ferry("list", "--json", "--limit", "1").stdout)) == 1


def test_logs_prefixed_and_raw(ferry: Ferry, tmp_path: Path) -> None:
    wf = tmp_path / "two.yaml"
    wf.write_text('version: "1"\nnodes:\n  - id: a\n    steps:\n'
                  '      - run: "echo one; echo two"\n'
                  '  - id: b\n    depends_on: [a]\n    steps:\n      - run: "printf last"\n')
    run_id = ferry.run_id(ferry("run", "-w", str(wf)).stdout)
    assert ferry("logs", "-i", run_id).stdout == "[a] one\n[a] two\n[b] last\n"
    assert ferry("logs", "-i", run_id, "-t", "a").stdout == "one\ntwo\n"
    assert ferry("logs", "-i", run_id, "-t", "b", "--follow").stdout == "last"


def test_run_json_prints_json_lines(ferry: Ferry) -> None:
    proc = ferry("run", "-w", HELLO, "--json")
    assert proc.returncode == 0
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert records[-1]["kind"] == "run" and records[-1]["run"]["status"] == "Completed"
    assert any(r.get("kind") == "output" and r["line"] == "Hello, World!" for r in records)


def test_cancel_paused_run_without_a_process(ferry: Ferry, paused: str) -> None:
    proc = ferry("cancel", "-i", paused)
    assert proc.returncode == 0, proc.stderr
    assert "Workflow run canceled successfully" in proc.stdout
    doc = ferry.doc(paused)
    assert doc["status"] == "Canceled"
    assert ferry.by_node(doc)["approve"][0]["status"] == "WontDo"
    assert ferry.by_node(doc)["build"][0]["status"] == "Completed"
