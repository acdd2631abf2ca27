"""The reaper's work once its runner is gone (`runner.cli.reaper_work.reap`), on real processes:
it ends what the dead runner's ledgers record and nothing of another runner of the same home,
says so one line per task, and writes to `<data>/reaper.log` when its stderr is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import reaper_work
from runner.cli.reaper import start_ticks
from runner.runtimes.ledger import boot_id, boottime
from tests.helpers import wait_until
from tests.helpers.reapers import gone

DEAD = (2_000_000_000, 12345)  # no such pid: the runner that died


def _ledger(work: Path, run: str, task: str, owner: tuple[int, int]) -> tuple[Path, int]:
    """A ledger of `owner` recording one step (a `sleep` in its own session); (path, pid)."""
    at = boottime()
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    path = work / run / "tasks" / f"{task}.procs"
    path.parent.mkdir(parents=True)
    lines = [{"v": 1, "runtime": "direct", "owner": owner[0], "owner_start": owner[1],
              "boot": boot_id()},
             {"step": f"mark-{task}", "pid": proc.pid, "at": round(at, 3)}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path, proc.pid


def _own() -> tuple[int, int]:
    return os.getpid(), start_ticks(os.getpid())


def test_reap_ends_the_dead_runners_tasks_only(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "data" / "work"
    dead_ledger, dead_pid = _ledger(work, "run-1", "task-a", DEAD)
    live_ledger, live_pid = _ledger(work, "run-2", "task-b", _own())
    try:
        code = reaper_work.reap(work, *DEAD, grace=2.0, log_format="cli")
        assert code == 0
        wait_until(lambda: gone(dead_pid), timeout=10, message="the dead runner's step to end")
        assert not gone(live_pid), "a live runner's step was ended"
        assert not dead_ledger.exists() and live_ledger.exists()
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert (f"ferry: ferry process {DEAD[0]} died while running task task-a (run run-1); "
                "ended the 1 process it left running") in err
    finally:
        for pid in (dead_pid, live_pid):
            subprocess.run(["kill", "-9", str(pid)], capture_output=True)


def test_reap_writes_to_the_data_dir_when_stderr_is_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "data" / "work"
    _, pid = _ledger(work, "run-1", "task-a", DEAD)
    closed = open(tmp_path / "x", "w")  # noqa: SIM115 - closed at once: a stream that is gone
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    try:
        assert reaper_work.reap(work, *DEAD, grace=2.0, log_format="json") == 0
    finally:
        subprocess.run(["kill", "-9", str(pid)], capture_output=True)
    line = json.loads((tmp_path / "data" / reaper_work.LOG_NAME).read_text())
    assert line["event"] == "reaper_stopped" and line["task"] == "task-a", line
    assert line["processes"] == 1 and line["runner_pid"] == DEAD[0]
