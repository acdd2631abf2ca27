"""`ferry run`/`resume` remove the containers a killed local run left behind (real Docker).

A leftover is made for real: a `ferry run` of a Docker workflow is SIGKILLed while its task's
container runs. Next to it lie containers that must survive: one of a run whose lock a live
process (this test) holds, and one of a run this FERRY_HOME never executed (another home on the
same engine).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.state.runlock import RunLock
from tests.conftest import REPO_ROOT
from tests.helpers import wait_until
from tests.helpers.reapers import kill_reaper

HELD = """\
version: "1"
nodes:
  - id: hold
    name: Hold
    type: automatic
    runtime:
      type: docker
      image: {image}
    steps:
      - name: wait
        run: |
          while [ ! -e /workspace/go ]; do sleep 0.1; done
          echo released
"""

QUICK_DOCKER = """\
version: "1"
nodes:
  - id: quick
    name: Quick
    type: automatic
    runtime:
      type: docker
      image: {image}
    steps:
      - name: hi
        run: echo hello from a container
"""

HOST_ONLY = """\
version: "1"
nodes:
  - id: host
    name: Host
    type: automatic
    steps:
      - name: hi
        run: echo hello from the host
"""


class LocalFerry:
    """`python -m runner` with a private FERRY_HOME and working directory."""

    def __init__(self, tmp: Path, image: str) -> None:
        self.home = tmp / "home"
        self.work = tmp / "work"
        self.home.mkdir()
        self.work.mkdir()
        self.image = image
        self.env = {**os.environ, "FERRY_HOME": str(self.home),
                    "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    @property
    def locks(self) -> Path:
        """Where the per-run locks live."""
        return self.home / "data" / "locks"

    def workflow(self, name: str, text: str) -> str:
        """Write a workflow file; its path."""
        path = self.work / f"{name}.yaml"
        path.write_text(text.format(image=self.image))
        return str(path)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a command to its end."""
        return subprocess.run([sys.executable, "-m", "runner", *args], env=self.env,
                              cwd=self.work, capture_output=True, text=True, timeout=120)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start a command in its own process group."""
        return subprocess.Popen([sys.executable, "-m", "runner", *args], env=self.env,
                                cwd=self.work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)


@pytest.fixture
def docker_client(docker_image: str) -> Any:
    """A Docker SDK client (the engine answers: `docker_image` checked it)."""
    import docker

    return docker.from_env()


@pytest.fixture
def made(docker_client: Any) -> Iterator[list[str]]:
    """Run ids whose containers the test creates; all removed at the end."""
    run_ids: list[str] = []
    yield run_ids
    for run_id in run_ids:
        for c in docker_client.api.containers(all=True, filters={"label": f"ferry.run={run_id}"}):
            with contextlib.suppress(Exception):
                docker_client.api.remove_container(c["Id"], force=True)


def _containers(client: Any, run_id: str) -> list[str]:
    # The low-level listing: `containers.list` inspects each one and fails on a container
    # removed in between.
    return [str(c["Id"]) for c in client.api.containers(
        all=True, filters={"label": ["ferry.runner=local", f"ferry.run={run_id}"]})]


def _crash_mid_task(ferry: LocalFerry, client: Any, made: list[str]) -> tuple[str, str]:
    """`ferry run` a Docker task and SIGKILL it and its reaper while the container runs: (run
    id, container)."""
    proc = ferry.popen("run", "-w", ferry.workflow("held", HELD))
    try:
        # The run's lock file names it: this home executes no other run.
        lock_file = wait_until(lambda: next(ferry.locks.glob("*.lock"), None), timeout=60,
                               message="the run's lock file")
        assert lock_file is not None
        run_id = lock_file.stem
        made.append(run_id)
        wait_until(lambda: _containers(client, run_id) or proc.poll() is not None,
                   timeout=60, message="the task container")
        assert proc.poll() is None, proc.communicate()
        found = _containers(client, run_id)
        kill_reaper(proc.pid)  # as `kill -9` of both would: else it removes the container
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    # The kernel released the dead process's lock; its container is still there.
    wait_until(lambda: not RunLock(ferry.locks, run_id).is_locked(), message="lock released")
    assert _containers(client, run_id) == found
    return run_id, found[0]


def _labelled(client: Any, image: str, run_id: str) -> str:
    """A (created, not started) container labelled like a local run's task container."""
    container = client.containers.create(image, ["sleep", "600"], labels={
        "ferry.runner": "local", "ferry.run": run_id, "ferry.task": str(uuid.uuid4()),
        "ferry.node": "x"})
    return str(container.id)


def test_run_reaps_dead_local_runs_only(tmp_path: Path, docker_image: str, docker_client: Any,
                                        made: list[str]) -> None:
    ferry = LocalFerry(tmp_path, docker_image)
    dead_run, dead_container = _crash_mid_task(ferry, docker_client, made)
    held_run, foreign_run = str(uuid.uuid4()), str(uuid.uuid4())
    made += [held_run, foreign_run]
    held = _labelled(docker_client, docker_image, held_run)
    foreign = _labelled(docker_client, docker_image, foreign_run)
    lock = RunLock(ferry.locks, held_run)
    assert lock.acquire()  # a live process (this test) executes `held_run`
    try:
        # A host-only workflow does not touch Docker: the leftover stays.
        host = ferry("run", "-w", ferry.workflow("host", HOST_ONLY))
        assert host.returncode == 0, host.stderr
        assert _containers(docker_client, dead_run) == [dead_container]

        quick = ferry("run", "-w", ferry.workflow("quick", QUICK_DOCKER))
        assert quick.returncode == 0, quick.stdout + quick.stderr
        assert "  [quick] hello from a container" in quick.stdout
        assert "removed 1 leftover container" in quick.stderr
        assert _containers(docker_client, dead_run) == []
        assert _containers(docker_client, held_run) == [held]
        assert _containers(docker_client, foreign_run) == [foreign]
    finally:
        lock.release()
    # The reaper held the dead run's lock only while reaping.
    assert not RunLock(ferry.locks, dead_run).is_locked()


def test_resume_reaps_the_crashed_run_and_runs_its_task_again(
        tmp_path: Path, docker_image: str, docker_client: Any, made: list[str]) -> None:
    ferry = LocalFerry(tmp_path, docker_image)
    run_id, leftover = _crash_mid_task(ferry, docker_client, made)
    (ferry.work / "go").touch()
    resumed = ferry("resume", "-i", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "interrupted while Running" in resumed.stdout
    assert "  [hold] released" in resumed.stdout
    assert leftover not in [c["Id"] for c in docker_client.api.containers(all=True)]
    assert _containers(docker_client, run_id) == []


def test_engine_down_is_quiet(tmp_path: Path) -> None:
    ferry = LocalFerry(tmp_path, "ferry-test/busybox:1")
    ferry.env["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"
    proc = ferry("run", "-w", ferry.workflow("quick", QUICK_DOCKER))
    # Nothing to reap without an engine: no warning; the task itself fails with its own error.
    assert "leftover" not in proc.stderr and "warning" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "docker engine is not reachable" in proc.stdout
