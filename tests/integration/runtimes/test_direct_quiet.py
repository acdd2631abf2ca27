"""The leftover search is skipped only when the kernel proves nothing was started after a step."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import psutil
import pytest

from runner.runtimes import direct
from runner.runtimes.direct import DirectRuntime
from runner.runtimes.proctree import nothing_started_since
from runner.workflow.model import Runtime as RuntimeOptions
from tests.helpers import wait_until
from tests.integration.runtimes.runtime_kit import Task, task_spec

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def _exited_unreaped(proc: subprocess.Popen[bytes]) -> None:
    wait_until(lambda: os.waitid(os.P_PID, proc.pid,
                                 os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None,
               message="child exited")


@pytest.mark.parametrize("script", ["/bin/true", "true & wait", "echo $(echo x) >/dev/null"])
def test_a_step_that_forked_is_never_quiet(script: str) -> None:
    proc = subprocess.Popen(["/bin/sh", "-c", script])
    _exited_unreaped(proc)
    try:
        assert not nothing_started_since(proc.pid)
    finally:
        proc.wait()


def test_a_thread_started_elsewhere_is_seen_too() -> None:
    proc = subprocess.Popen(["/bin/sh", "-c", "true"])
    _exited_unreaped(proc)
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    try:
        assert not nothing_started_since(proc.pid)  # a new tid was allocated after the step
    finally:
        proc.wait()


def test_without_pidfd_exit_code_output_and_leftovers_are_handled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct, "_pidfd", lambda pid: None)  # kernels before 5.3
    spec = task_spec(tmp_path, RuntimeOptions())
    task = Task(DirectRuntime(ENV, grace_seconds=1.0).open(spec), spec.workspace,
                spec.control_dir)
    try:
        result, out = task.run("echo one\nsleep 300 &\necho $! > bg.pid\nexit 3\n")
        assert result.exit_code == 3 and out.text == "one\n"
        pid = int((spec.workspace / "bg.pid").read_text())
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        result, out = task.run("echo two\n")
        assert result.ok and out.text == "two\n"
    finally:
        task.handle.close()
