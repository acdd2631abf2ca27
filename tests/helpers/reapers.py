"""Finding and killing a runner's reaper (`runner.cli.reaper`): tests of what the next Ferry
process does after `kill -9` of both the runner and its reaper (what the reaper cannot cover)."""

from __future__ import annotations

import contextlib
import os
import signal

import psutil

from tests.helpers import wait_until


def reaper_of(runner_pid: int) -> int | None:
    """The pid of the reaper watching `runner_pid`, if one runs."""
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info.get("cmdline") or []
        if "runner.cli.reaper" in argv and "--owner" in argv:
            at = argv.index("--owner")
            if at + 1 < len(argv) and argv[at + 1] == str(runner_pid):
                return int(proc.pid)
    return None


def wait_reaper(runner_pid: int, timeout: float = 20) -> int:
    """The reaper of `runner_pid`, waiting for it to start."""
    found: int = wait_until(lambda: reaper_of(runner_pid), timeout=timeout,
                            message=f"the reaper of pid {runner_pid}")
    return found


def gone(pid: int) -> bool:
    """The process no longer runs (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_reaper(runner_pid: int) -> None:
    """SIGKILL the reaper of `runner_pid` and wait until it is gone (the runner lives on)."""
    pid = wait_reaper(runner_pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: gone(pid), timeout=10, message=f"reaper {pid} to die")
