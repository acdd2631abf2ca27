"""The host runtime leaves no process behind: background jobs, setsid'd and daemonized ones.

Under both process trackings (a cgroup per task; sessions and markers) and both ways the engine
starts a step (`sh -e -c TEXT`, and a script file). One process is the documented limit of the
session tracking: a double-forked child that called `setsid` under `env -i` (no session, no
marker, no parent of the step left) escapes it; the cgroup catches it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from runner.errors import ConfigError, RuntimeUnavailable
from runner.runtimes.base import StepResult, StepSpec
from runner.runtimes.direct import DirectRuntime
from runner.runtimes.spawn import Credentials
from runner.runtimes.stepenv import StepUser
from runner.runtimes.tracking import Tracking
from runner.workflow.model import Runtime as RuntimeOptions
from tests.helpers import wait_until
from tests.integration.runtimes.runtime_kit import Output, Task, task_spec

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}

# A background job in the step's group, a setsid'd grandchild in its own session, a
# double-forked daemon re-parented to init, and one that also cleared its environment; each
# writes its pid once it runs.
SPAWN = """
sleep 300 &
echo $! > bg.pid
setsid sh -c 'echo $$ > setsid.pid; exec sleep 300' &
(setsid sh -c 'echo $$ > daemon.pid; exec sleep 300' > /dev/null 2>&1 < /dev/null &)
(setsid env -i /bin/sh -c 'echo $$ > bare.pid; exec sleep 300' > /dev/null 2>&1 < /dev/null &)
while [ ! -s setsid.pid ] || [ ! -s daemon.pid ] || [ ! -s bare.pid ]; do sleep 0.01; done
echo spawned
"""
NAMES = ("bg", "setsid", "daemon", "bare")
ESCAPES = {Tracking.CGROUP: set(), Tracking.SESSION: {"bare"}}
"""What each tracking lets survive the step (README "Reliability")."""

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


Opener = Callable[..., Task]


@pytest.fixture
def opener(tmp_path: Path) -> Iterator[Opener]:
    """Opens host tasks (closing them at the end): `opener(grace, fast_spawn, tracking)`."""
    opened: list[Task] = []

    def make(grace: float = 2.0, fast_spawn: bool = True,
             tracking: Tracking = Tracking.CGROUP, name: str = "t") -> Task:
        spec = task_spec(tmp_path, RuntimeOptions(), name=name)
        runtime = DirectRuntime(ENV, grace_seconds=grace, fast_spawn=fast_spawn,
                                tracking=tracking)
        task = Task(runtime.open(spec), spec.workspace, spec.control_dir)
        opened.append(task)
        return task

    yield make
    for task in opened:
        task.handle.close()


def _run(task: Task, form: str, text: str, *, sink: Output, cancel: threading.Event,
         timeout: float) -> tuple[StepResult, Output]:
    """Run `text` from a script file, or as the engine runs a small `run`: `sh -e -c TEXT`."""
    if form == "file":
        return task.run(text, sink=sink, cancel=cancel, timeout=timeout)
    step = StepSpec(0, "inline", ["/bin/sh", "-e", "-c", text], {}, timeout=timeout)
    return task.handle.run_step(step, sink, cancel), sink


@pytest.mark.parametrize("tracking", [Tracking.CGROUP, Tracking.SESSION])
@pytest.mark.parametrize("form", ["inline", "file"])
@pytest.mark.parametrize("fast_spawn", [True, False], ids=["fork_exec", "popen"])
@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_no_process_survives_the_step(opener: Opener, ending: str, fast_spawn: bool,
                                      form: str, tracking: Tracking) -> None:
    tail, reason = ENDINGS[ending]
    task = opener(fast_spawn=fast_spawn, tracking=tracking)
    cancel = threading.Event()
    sink = Output(hook=lambda chunk: cancel.set() if ending == "cancel" and b"spawned" in chunk
                  else None)
    result, out = _run(task, form, SPAWN + tail, cancel=cancel, sink=sink,
                       timeout=1.5 if ending == "timeout" else 60)
    pids = {name: int((task.workspace / f"{name}.pid").read_text()) for name in NAMES}
    survivors = {name for name, pid in pids.items() if _alive(pid)}
    for name in survivors:
        os.kill(pids[name], signal.SIGKILL)
    assert out.text == "spawned\n"
    assert result.reason == reason
    if ending == "failure":
        assert result.exit_code == 7
    # The step has returned: every process it started must already be gone (or a zombie).
    assert survivors == ESCAPES[tracking], f"left behind: {survivors}"


@pytest.mark.parametrize("tracking", [Tracking.CGROUP, Tracking.SESSION])
def test_a_sigterm_ignoring_leftover_is_killed(opener: Opener, tracking: Tracking) -> None:
    task = opener(grace=0.3, tracking=tracking)
    result, _ = task.run("(trap '' TERM; exec sleep 300) &\necho $! > stubborn.pid\n")
    pid = int((task.workspace / "stubborn.pid").read_text())
    assert result.ok
    assert not _alive(pid)


@pytest.mark.parametrize("tracking", [Tracking.CGROUP, Tracking.SESSION])
def test_steps_of_other_tasks_are_not_touched(opener: Opener, tracking: Tracking) -> None:
    a, b = (opener(grace=1.0, tracking=tracking, name=n) for n in ("a", "b"))
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


@pytest.mark.parametrize("tracking", [Tracking.CGROUP, Tracking.SESSION])
def test_own_process_is_never_signalled(opener: Opener, tracking: Tracking) -> None:
    task = opener(tracking=tracking)
    result, _ = task.run(f"echo {os.getpid()} > parent.pid\nsleep 300 &\ntrue")
    assert result.ok
    assert _alive(os.getpid())


@pytest.mark.parametrize("tracking", [Tracking.CGROUP, Tracking.SESSION])
def test_steps_run_as_another_user_are_tracked_alike(tracking: Tracking) -> None:
    """A root runner with `runner.step_user`: the step may not write the runner's cgroup, so
    the runner moves it into the task's while it waits at its gate; nothing survives."""
    if os.geteuid() != 0:
        pytest.skip("switching steps to another user needs root")
    user = _step_user()
    root = Path(tempfile.mkdtemp(prefix="ferry-tree-"))
    os.chmod(root, 0o755)
    try:
        spec = task_spec(root, RuntimeOptions())
        os.chmod(spec.workspace, 0o777)
        runtime = DirectRuntime(ENV, grace_seconds=1.0, tracking=tracking,
                                creds=Credentials(user.uid, user.gid, user.groups))
        task = Task(runtime.open(spec), spec.workspace, spec.control_dir)
        try:
            result, out = _run(task, "inline", SPAWN + "id -u\n", sink=Output(),
                               cancel=threading.Event(), timeout=60)
        finally:
            task.handle.close()
        pids = {name: int((spec.workspace / f"{name}.pid").read_text()) for name in NAMES}
        survivors = {name for name, pid in pids.items() if _alive(pid)}
        for name in survivors:
            os.kill(pids[name], signal.SIGKILL)
        assert result.ok and out.text == f"spawned\n{user.uid}\n"
        assert survivors == ESCAPES[tracking], f"left behind: {survivors}"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _step_user() -> StepUser:
    """The unprivileged step user (scripts/setup creates it; made here when missing)."""
    try:
        return StepUser.lookup("ferry-step")
    except ConfigError:
        subprocess.run(["useradd", "--system", "--create-home", "--home-dir",
                        "/var/lib/ferry-step", "--shell", "/usr/sbin/nologin", "ferry-step"],
                       check=True)
        return StepUser.lookup("ferry-step")
