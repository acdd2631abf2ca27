"""What a run's lines and `ferry status` say, through the real CLI: a canceled task reads
Canceled (not "Failed - step ... failed: canceled"), a blocked task does not repeat "blocked", a
from_state matrix announces its tasks once, with its children."""

from __future__ import annotations

import json
from pathlib import Path

from runner.cli.render import task_line
from tests.helpers import wait_until
from tests.integration.local.conftest import REPO, Ferry

EXAMPLES = REPO / "examples"
SLOW = """\
version: "1"
nodes:
  - id: slow
    steps:
      - name: Sleep
        run: touch {started}; sleep 60
  - id: fan
    strategy: {{type: matrix, values: [{{k: 1}}]}}
    steps:
      - run: sleep 60
  - id: after
    depends_on: [slow]
    steps:
      - run: echo never
"""


def test_a_canceled_task_reads_canceled(ferry: Ferry, tmp_path: Path) -> None:
    started = tmp_path / "started"
    wf = tmp_path / "slow.yaml"
    wf.write_text(SLOW.format(started=started))
    live = ferry.popen("run", "-w", str(wf))
    wait_until(started.exists, timeout=60, message="the step to start")
    run_id = json.loads(ferry("list", "--json").stdout)[0]["id"]
    assert ferry("cancel", "-i", run_id).returncode == 0
    out, _ = live.communicate(timeout=60)
    assert live.returncode == 4
    status = ferry("status", "-i", run_id).stdout
    doc = ferry.doc(run_id)
    slow = ferry.by_node(doc)["slow"][0]
    for text in (out, status):
        assert "failed: canceled" not in text and "Failed - step" not in text, text
    assert f"Task slow ({slow['id']}): Canceled (stopped during step 'Sleep')" in out
    assert f"- slow ({slow['id']}): Canceled - stopped during step 'Sleep'" in status
    assert "step 1 'Sleep' failed" not in out
    # stored as Failed for the scheduler and the protocol, marked canceled
    assert slow["status"] == "Failed" and slow["canceled"] is True
    [master] = [t for t in ferry.by_node(doc)["fan"] if t["master"]]
    assert master["status"] == "WontDo", "a canceled matrix is not a failed one"
    assert "1 of 1 matrix tasks failed" not in out
    assert "- after (" in status and "WontDo - canceled" in status


def test_blocked_is_said_once(ferry: Ferry) -> None:
    proc = ferry("run", "-w", str(EXAMPLES / "failure-blocked.yaml"))
    assert proc.returncode == 1
    run_id = ferry.run_id(proc.stdout)
    status = ferry("status", "-i", run_id).stdout
    for text in (proc.stdout, status):
        assert "Blocked: blocked" not in text and "Blocked (blocked" not in text
        assert "Blocked - blocked" not in text
    assert "Blocked (upstream node 'compile' failed)" in proc.stdout
    assert "Blocked - upstream node 'compile' failed" in status
    # a run stored before the wording changed reads the same
    doc = ferry.doc(run_id)
    [test] = ferry.by_node(doc)["test"]
    old = {**test, "error": "blocked: upstream node 'compile' failed"}
    assert task_line(doc, old).endswith("Blocked - upstream node 'compile' failed")


def test_from_state_matrix_is_announced_once_with_its_children(ferry: Ferry) -> None:
    proc = ferry("run", "-w", str(EXAMPLES / "matrix-from-state.yaml"))
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    at = [i for i, ln in enumerate(lines) if "Created matrix tasks for process-shard:" in ln]
    assert len(at) == 1, proc.stdout
    block = lines[at[0] + 1:at[0] + 4]
    assert block[0].startswith("  - Master task: ")
    assert block[1].startswith("  - Name alpha") and block[2].startswith("  - Name beta")
    # and after the task that wrote the state, not before it ran
    discover_done = next(i for i, ln in enumerate(lines) if "Task discover (" in ln
                         and ln.endswith("Completed"))
    assert at[0] > discover_done
