"""A task opened again ends what its earlier attempt left running before `open` returns.

This is the guarantee under every path that runs a task again on this host (`ferry resume`, a
daemon claiming the run again, a retry): an earlier attempt ran in another process, that process
was killed with SIGKILL mid-step, its step (and what the step daemonized with `setsid` and
`env -i`) runs on, re-parented to init, or its container runs on. `Runtime.open` with the same
ledger must end all of it first. Cells: host steps under each tracking, and Docker.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.runtimes.base import StepSpec, TaskSpec
from runner.runtimes.direct import DirectRuntime
from runner.runtimes.ledger import boot_id, end_earlier_attempt
from runner.runtimes.ledger import read as read_ledger
from runner.runtimes.tracking import Tracking
from runner.workflow.model import Runtime as RuntimeOptions
from runner.workflow.model import RuntimeType
from tests.conftest import REPO_ROOT
from tests.helpers import beats as bt
from tests.helpers import wait_until

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}

# The earlier attempt: a process that opens the task and runs its step until it is killed.
ATTEMPT = """\
import json, sys, threading
from pathlib import Path
from runner.runtimes.base import StepSpec, TaskSpec
from runner.runtimes.factory import RuntimeSettings, container_runtime
from runner.runtimes.direct import DirectRuntime
from runner.runtimes.tracking import Tracking
from runner.workflow.model import Runtime, RuntimeType
args = json.loads(sys.argv[1])
kind, root = args["kind"], Path(args["root"])
if kind == "docker":
    runtime = container_runtime("docker", RuntimeSettings(runner_id=args["runner"]))
    options = Runtime(type=RuntimeType.DOCKER, image=args["image"])
else:
    runtime = DirectRuntime({"PATH": "/usr/bin:/bin"}, tracking=Tracking(args["tracking"]))
    options = Runtime()
spec = TaskSpec(run_id="run-x", task_id="task-x", node_id="n", options=options,
                workspace=root / "ws", control_dir=root / "ctl", ledger=root / "task-x.procs")
handle = runtime.open(spec)
handle.run_step(StepSpec(0, "beat", ["/bin/sh", "-e", "-c", args["script"]], {}),
                lambda chunk: None, threading.Event())
"""

CELLS = [("quiet", "cgroup"), ("daemon", "cgroup"), ("quiet", "session"), ("docker", "auto")]


def _spec(root: Path, options: RuntimeOptions) -> TaskSpec:
    return TaskSpec(run_id="run-x", task_id="task-x", node_id="n", options=options,
                    workspace=root / "ws", control_dir=root / "ctl",
                    ledger=root / "task-x.procs")


def _killed_attempt(root: Path, kind: str, tracking: str, image: str, runner: str) -> None:
    """Run the earlier attempt in a child process and SIGKILL it while the step beats."""
    (root / "ws").mkdir()
    (root / "ctl").mkdir()
    where = root / "ws" if kind != "docker" else Path("/workspace")
    args = {"kind": kind, "root": str(root), "tracking": tracking, "image": image,
            "runner": runner, "script": bt.script("quiet" if kind == "docker" else kind, where)}
    child = subprocess.Popen([sys.executable, "-c", ATTEMPT, json.dumps(args)], cwd=REPO_ROOT,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(bt.read(root / "ws")) >= 3 or child.poll() is not None,
                   timeout=60, message="the earlier attempt's step to beat")
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stderr is not None:
            child.stderr.close()
    seen = len(bt.read(root / "ws"))
    wait_until(lambda: len(bt.read(root / "ws")) > seen + 2, timeout=10,
               message="the orphaned step to beat on")


@pytest.mark.parametrize(("kind", "tracking"), CELLS, ids=[f"{k}-{t}" for k, t in CELLS])
def test_open_ends_the_earlier_attempt_first(tmp_path: Path, kind: str, tracking: str,
                                             request: pytest.FixtureRequest) -> None:
    image = request.getfixturevalue("docker_image") if kind == "docker" else ""
    runner = f"test-{uuid.uuid4().hex[:10]}"
    _killed_attempt(tmp_path, kind, tracking, image, runner)
    beats = bt.read(tmp_path / "ws")
    first = bt.attempts(beats)[0]
    orphans = bt.host_pids(beats, first) if kind != "docker" else set()
    recorded = read_ledger(tmp_path / "task-x.procs")
    assert recorded is not None
    runtime: Any
    if kind == "docker":
        import docker

        from runner.runtimes.docker import DockerRuntime

        runtime = DockerRuntime(docker.from_env, runner_id=runner, grace_seconds=1.0)
        options = RuntimeOptions(type=RuntimeType.DOCKER, image=image)
    else:
        runtime = DirectRuntime(ENV, grace_seconds=1.0, tracking=Tracking(tracking))
        options = RuntimeOptions()
    handle = runtime.open(_spec(tmp_path, options))
    try:
        # open() has returned: nothing of the earlier attempt may run any more.
        assert {pid for pid in orphans if bt.alive(pid)} == set()
        if kind == "docker":
            api = runtime.client().api
            names = {name for _, name in recorded.containers}
            live = [c for c in api.containers(all=True, filters={"label": f"ferry.runner={runner}"})
                    if {n.lstrip("/") for n in c["Names"]} & names]
            assert live == [], "the earlier attempt's container still exists"
        for path in recorded.cgroups:
            assert not Path(path).exists(), "the earlier attempt's cgroup was not removed"
        # ... and what it ended is said (the engine writes these lines into the task's log)
        expected = ("removed the container" if kind == "docker"
                    else "an earlier attempt of this task left running")
        assert any(expected in note for note in handle.notes), handle.notes
        result = handle.run_step(StepSpec(0, "s", ["/bin/sh", "-e", "-c", "true"], {}),
                                 lambda chunk: None, threading.Event())
        assert result.ok
    finally:
        handle.close()
    assert not (tmp_path / "task-x.procs").exists(), "the ledger outlived its task"


def test_an_earlier_attempt_that_cannot_be_stopped_refuses_the_task() -> None:
    """A ledger of a root-owned step, opened again by an unprivileged user: the step cannot
    be signalled, so the task must not run (one line naming the process)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start a process another user cannot signal")
    root = Path(tempfile.mkdtemp(prefix="ferry-ledger-"))
    os.chmod(root, 0o755)
    step = subprocess.Popen(["sleep", "300"])  # stands in for the orphaned step
    try:
        ledger = root / "task-x.procs"
        ledger.write_text(json.dumps({"v": 1, "runtime": "direct", "owner": 1 << 22,
                                      "owner_start": 0, "boot": boot_id()}) + "\n" +
                          json.dumps({"step": uuid.uuid4().hex, "pid": step.pid,
                                      "at": _boottime_of(step.pid)}) + "\n")
        os.chmod(ledger, 0o644)
        answer = _as_nobody(lambda: end_earlier_attempt(ledger, 0.2))
        assert answer.startswith("RuntimeUnavailable: processes of an earlier attempt of this "
                                 "task are still running and cannot be stopped"), answer
        assert str(step.pid) in answer
        assert step.poll() is None
        assert ledger.exists(), "kept for the next try"
    finally:
        step.kill()
        step.wait()
        shutil.rmtree(root)


def _as_nobody(fn: Callable[[], object]) -> str:
    """Run `fn` in a forked child that dropped root for `nobody`; 'ok' or 'Error: message'."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                fn()
                answer = "ok"
            except Exception as exc:
                answer = f"{type(exc).__name__}: {exc}"
            os.write(write_end, answer.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        answer = fh.read().decode()
    os.waitpid(pid, 0)
    return answer


def _boottime_of(pid: int) -> float:
    from runner.runtimes.proctree import stat_of

    info = stat_of(pid)
    assert info is not None
    return info.start / os.sysconf("SC_CLK_TCK")
