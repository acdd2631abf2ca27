"""Real faults: `ferry cancel` from a second process, SIGTERM/SIGINT to `ferry run`, and SIGKILL
of the whole `ferry run` process group followed by `ferry resume`."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import wait_until
from tests.integration.local.conftest import Ferry

# `slow` starts a background grandchild and then waits; both record their pids so the test can
# prove that nothing of the task survives.
SLOW = """version: "1"
name: slow
nodes:
  - id: slow
    steps:
      - name: wait
        run: |
          sleep 300 &
          echo $! > grandchild.pid
          echo $$ > step.pid
          echo started
          wait
  - id: after
    depends_on: [slow]
    steps:
      - run: echo never
"""

# `first` has a side effect that must happen once; `second` waits for a file the test controls.
CRASH = """version: "1"
name: crash
nodes:
  - id: first
    steps:
      - run: echo once >> side-effect.txt
  - id: second
    depends_on: [first]
    steps:
      - run: |
          echo $$ >> second-pids.txt
          while [ ! -f go ]; do sleep 0.05; done
          echo finished >> second-done.txt
"""


class _Reader:
    """Collects a child's stdout lines on a thread (so waiting never blocks on a pipe)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        self._thread = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline,
                                                                              "")), daemon=True)
        self._thread.start()

    def has(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def join(self) -> str:
        self._thread.join(10)
        return "".join(self.lines)


def _pids(ferry: Ferry, *names: str) -> list[int]:
    return [int(line) for n in names for line in (ferry.workdir / n).read_text().split()]


def _start_slow(ferry: Ferry, tmp_path: Path) -> tuple[subprocess.Popen[str], _Reader, str]:
    wf = tmp_path / "slow.yaml"
    wf.write_text(SLOW)
    proc = ferry.popen("run", "-w", str(wf))
    reader = _Reader(proc)
    wait_until(lambda: reader.has("[slow] started"), timeout=30, message="the step to start")
    run_id = next(ln.split("ID: ")[1].strip() for ln in reader.lines if "started with ID" in ln)
    return proc, reader, run_id


def _assert_all_gone(pids: list[int]) -> None:
    def gone() -> bool:
        return not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                       for p in pids)
    wait_until(gone, timeout=10, message=f"processes {pids} to be gone")


def test_cancel_from_another_process_stops_the_run(ferry: Ferry, tmp_path: Path) -> None:
    proc, reader, run_id = _start_slow(ferry, tmp_path)
    pids = _pids(ferry, "step.pid", "grandchild.pid")
    asked = time.monotonic()
    cancel = ferry("cancel", "-i", run_id, timeout=60)
    code = proc.wait(30)
    stopped_after = time.monotonic() - asked
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    assert f"Canceling workflow run {run_id}..." in cancel.stdout
    assert "Workflow run canceled successfully" in cancel.stdout
    assert code == 4, reader.join()
    assert "Workflow canceled" in reader.join()
    _assert_all_gone(pids)
    doc = ferry.doc(run_id)
    assert doc["status"] == "Canceled"
    assert {t["node_id"]: t["status"] for t in doc["tasks"].values()}["after"] == "WontDo"
    # Reported, not asserted as a threshold (speed belongs in bench/): the spec asks for < 2 s.
    print(f"cancel-to-exit: {stopped_after:.2f}s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_cancels_cleanly(ferry: Ferry, tmp_path: Path, sig: signal.Signals) -> None:
    proc, reader, run_id = _start_slow(ferry, tmp_path)
    pids = _pids(ferry, "step.pid", "grandchild.pid")
    proc.send_signal(sig)
    assert proc.wait(30) == 4, reader.join()
    _assert_all_gone(pids)
    assert ferry.doc(run_id)["status"] == "Canceled"
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_sigkill_then_resume_runs_nothing_twice(ferry: Ferry, tmp_path: Path) -> None:
    wf = tmp_path / "crash.yaml"
    wf.write_text(CRASH)
    proc = ferry.popen("run", "-w", str(wf))
    reader = _Reader(proc)
    pids_file = ferry.workdir / "second-pids.txt"
    wait_until(lambda: pids_file.exists() and pids_file.read_text().strip(), timeout=30,
               message="the second task to be running")
    run_id = next(ln.split("ID: ")[1].strip() for ln in reader.lines if "started with ID" in ln)
    # The whole machine "crashes": ferry's process group and the step (its own session) die.
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in _pids(ferry, "second-pids.txt"):
        os.kill(pid, signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    reader.join()

    crashed = ferry.doc(run_id)
    states = {t["node_id"]: t["status"] for t in crashed["tasks"].values()}
    assert states == {"first": "Completed", "second": "Running"}
    # Another command meanwhile sees a run that nobody executes and can take it over.
    (ferry.workdir / "go").touch()
    resumed = ferry("resume", "-i", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "interrupted" in resumed.stdout

    assert (ferry.workdir / "side-effect.txt").read_text() == "once\n"
    assert len(_pids(ferry, "second-pids.txt")) == 2  # the interrupted task ran again
    assert (ferry.workdir / "second-done.txt").read_text() == "finished\n"
    doc = ferry.doc(run_id)
    tasks = {t["node_id"]: t for t in doc["tasks"].values()}
    assert doc["status"] == "Completed"
    assert tasks["second"]["interrupted"] == 1 and tasks["first"]["interrupted"] == 0
    status = ferry("status", "-i", run_id).stdout
    assert "interrupted 1x" in status
    assert "Interrupted tasks (re-run after a crash): 1" in status


def test_second_executor_of_one_run_is_refused(ferry: Ferry, tmp_path: Path) -> None:
    proc, _reader, run_id = _start_slow(ferry, tmp_path)
    try:
        before = ferry.db_dump()
        other = ferry("resume", "-i", run_id)
        assert other.returncode == 2
        assert "being executed by another ferry process" in other.stderr
        assert ferry.db_dump() == before
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
