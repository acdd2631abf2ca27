"""Limits instead of wedges: a step writing an outputs file or a state value over the documented
limit fails (that step, naming the file or key, the size and the limit); the run goes on to its
end. Real steps on the host, through the engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.document import RunStatus, TaskStatus
from runner.engine.outputs import Entry, OutputsError, entries_to_ops
from runner.limits import (
    MAX_OUTPUTS_FILE_BYTES,
    MAX_RECORD_BYTES,
    MAX_STATE_VALUE_BYTES,
    json_size,
)
from tests.unit.engine.engine_support import make_executor, one, workflow


def _run(tmp_path: Path, script: str) -> dict[str, object]:
    wf = workflow({"version": "1", "nodes": [
        {"id": "big", "steps": [{"name": "write", "run": script},
                                {"name": "after", "run": "echo never"}]},
        {"id": "other", "steps": [{"name": "ok", "run": "echo 'small=1' >> $STATE_OUTPUTS"}]}]})
    executor, backend, _ = make_executor(tmp_path)
    run_id = executor.create_run(wf)
    assert executor.execute(run_id) == RunStatus.FAILED
    doc: dict[str, object] = backend.load(run_id)
    return doc


def test_a_state_value_over_the_limit_fails_the_step_that_wrote_it(tmp_path: Path) -> None:
    # 1.5 MiB of digits (a string: 2 quotes more as JSON): under the file limit, over the value one
    doc = _run(tmp_path, 'printf "big=%0*d\\n" 1572864 0 >> "$STATE_OUTPUTS"')
    task = one(doc, "big")
    assert task["status"] == TaskStatus.FAILED and task["step"] == 0
    assert task["error"] == (
        f"step 'write' failed: STATE_OUTPUTS: the value of 'big' is 1572866 bytes as JSON, "
        f"over the limit of {MAX_STATE_VALUE_BYTES} bytes (1 MiB)")
    assert "big" not in doc["state"]  # type: ignore[operator]
    assert doc["state"] == {"small": 1}  # the other branch went on
    assert one(doc, "other")["status"] == TaskStatus.COMPLETED


def test_an_outputs_file_over_the_limit_fails_the_step_without_reading_it(
        tmp_path: Path) -> None:
    # 20 MiB of lines, each value small: the file itself is too large
    doc = _run(tmp_path, 'yes "k@=1" | head -c 20971520 >> "$TASK_OUTPUTS"')
    task = one(doc, "big")
    assert task["status"] == TaskStatus.FAILED
    assert task["error"] == (
        f"step 'write' failed: TASK_OUTPUTS: the step wrote 20971520 bytes, over the limit of "
        f"{MAX_OUTPUTS_FILE_BYTES} bytes (2 MiB) for one step")
    assert not task.get("outputs")


def test_appends_count_the_whole_array() -> None:
    item = "x" * 1000  # 1002 bytes as JSON
    current = {"list": [item] * 1000}  # 1,003,001 bytes
    ok = entries_to_ops([Entry("list", item, append=True, line=1)], current, "/state", "S")
    assert ok == [{"op": "add", "path": "/state/list/-", "value": item}]
    many = [Entry("list", item, append=True, line=i) for i in range(50)]
    with pytest.raises(OutputsError, match=r"S: the value of 'list' is 1049139 bytes as JSON"):
        entries_to_ops(many, current, "/state", "S")


def test_a_plan_too_large_for_one_change_fails_the_run_before_journaling_it(
        tmp_path: Path) -> None:
    from runner.api.client import ControlClient
    from runner.state.api import ApiBackend
    from runner.state.journal import Journal

    items = [{"shard": f"{i:05d}-" + "x" * 300} for i in range(15000)]  # ~6 MB of new tasks
    wf = workflow({"version": "1", "nodes": [
        {"id": "fan", "strategy": {"type": "matrix", "values": items},
         "steps": [{"run": "true"}]}]})
    client = ControlClient("http://127.0.0.1:9", "token")  # never reached: nothing is sent
    backend = ApiBackend(client, tmp_path / "journal", tmp_path / "logs", background=False)
    executor, _, _ = make_executor(tmp_path, backend)
    run_id = executor.create_run(wf)
    assert executor.execute(run_id) == RunStatus.FAILED
    doc = backend.load(run_id)
    assert doc["error"].startswith("cannot plan the run: a change of ")
    assert f"over the limit of {MAX_RECORD_BYTES} bytes (4 MiB)" in doc["error"]
    assert doc["tasks"] == {}
    backend.close()
    journal = Journal(tmp_path / "journal" / f"{run_id}.jsonl", readonly=True)
    diffs = [r for r in journal.pending() if r.kind == "diff"]
    assert diffs and all(json_size(r.data["diff"]["ops"]) <= MAX_RECORD_BYTES for r in diffs)
    assert diffs[-1].data["diff"]["ops"][0] == {"op": "replace", "path": "/status",
                                                 "value": "Failed"}
