"""The host runtime leaves no process behind: background jobs, setsid'd and daemonized ones."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psutil
import pytest

from runner.errors import RuntimeUnavailable
from runner.runtimes.direct import DirectRuntime
from runner.workflow.model import Runtime as RuntimeOptions
from tests.helpers import wait_until
from tests.integration.runtimes.runtime_kit import Output, Task, task_spec

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}

# A background job in the step's group, a setsid'd grandchild in its own session, and a
# double-forked daemon re-parented to init; each writes its pid once it runs.
SPAWN = """
sleep 300 &
echo $! > bg.pid
setsid sh -c 'echo $$ > setsid.pid; exec sleep 300' &
(setsid sh -c 'echo $$ > daemon.pid; exec sleep 300' > /dev/null 2>&1 < /dev/null &)
while [ ! -s setsid.pid ] || [ ! -s daemon.pid ]; do sleep 0.01; done
echo spawned
"""

ENDINGS = {
    "success": ("", None),
    "failure": ("exit 7\n", None),
    "timeout": ("sleep 300\n", "timeout"),
    "cancel": ("sleep 300\n", "canceled"),
}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _open(tmp_path: Path, grace: float = 2.0, fast_spawn: bool = True) -> Task:
    spec = task_spec(tmp_path, RuntimeOptions())
    handle = DirectRuntime(ENV, grace_seconds=grace, fast_spawn=fast_spawn).open(spec)
    return Task(handle, spec.workspace, spec.control_dir)


@pytest.mark.parametrize("fast_spawn", [True, False], ids=["fork_exec", "popen"])
@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_no_process_survives_the_step(tmp_path: Path, ending: str, fast_spawn: bool) -> None:
    tail, reason = ENDINGS[ending]
    task = _open(tmp_path, fast_spawn=fast_spawn)
    cancel = threading.Event()
    sink = Output(hook=lambda chunk: cancel.set() if ending == "cancel" and b"spawned" in chunk
                  else None)
    result, out = task.run(SPAWN + tail, cancel=cancel, sink=sink,
                           timeout=1.5 if ending == "timeout" else 60)
    pids = [int((task.workspace / f"{name}.pid").read_text()) for name in
            ("bg", "setsid", "daemon")]
    assert out.text == "spawned\n"
    assert result.reason == reason
    assert result.exit_code == (7 if ending == "failure" else result.exit_code)
    # The step has returned: every process it started must already be gone (or a zombie).
    survivors = [pid for pid in pids if _alive(pid)]
    assert survivors == [], f"left behind: {survivors}"


def test_a_sigterm_ignoring_leftover_is_killed(tmp_path: Path) -> None:
    task = _open(tmp_path, grace=0.3)
    result, _ = task.run("(trap '' TERM; exec sleep 300) &\necho $! > stubborn.pid\n")
    pid = int((task.workspace / "stubborn.pid").read_text())
    assert result.ok
    assert not _alive(pid)


def test_steps_of_other_tasks_are_not_touched(tmp_path: Path) -> None:
    runtime = DirectRuntime(ENV, grace_seconds=1.0)
    specs = [task_spec(tmp_path, RuntimeOptions(), name=n) for n in ("a", "b")]
    a, b = (Task(runtime.open(s), s.workspace, s.control_dir) for s in specs)
    started = threading.Event()
    release = threading.Event()
    results: list[object] = []

    def long_step() -> None:
        sink = Output(hook=lambda chunk: started.set())
        results.append(a.run("echo up\nwhile [ ! -e go ]; do sleep 0.02; done\n", sink=sink,
                             timeout=30)[0])
        release.set()

    thread = threading.Thread(target=long_step)
    thread.start()
    wait_until(started.is_set, message="task a running")
    # Task b's steps start and end (with a leftover of its own) while task a's step runs.
    assert b.run("sleep 300 &\ntrue")[0].ok
    assert not release.is_set()
    (a.workspace / "go").write_text("")
    thread.join(30)
    assert results and results[0].ok  # type: ignore[attr-defined]


def test_missing_workspace_is_refused(tmp_path: Path) -> None:
    spec = task_spec(tmp_path, RuntimeOptions())
    spec.workspace.rmdir()
    with pytest.raises(RuntimeUnavailable, match="is not a directory"):
        DirectRuntime(ENV).open(spec)


def test_own_process_is_never_signalled(tmp_path: Path) -> None:
    task = _open(tmp_path)
    result, _ = task.run(f"echo {os.getpid()} > parent.pid\nsleep 300 &\ntrue")
    assert result.ok
    assert _alive(os.getpid())
