"""Fixtures of the runtime tests: a Podman API service and its test image.

Podman tests run wherever Podman can start a container and skip (with the engine's own error)
where it cannot — except in CI (CI=true), where `scripts/setup` installs Podman and catatonit and
the tests must fail, never skip, when it does not work; likewise Docker (see tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from runner.errors import RuntimeUnavailable
from runner.runtimes.base import StepSpec, TaskSpec
from runner.runtimes.podman import PodmanRuntime
from runner.workflow.model import Runtime as RuntimeOptions
from runner.workflow.model import RuntimeType
from tests.conftest import REPO_ROOT, TEST_IMAGE
from tests.helpers import IN_CI, wait_until

PODMAN_CONF = REPO_ROOT / "tests/images/podman-containers.conf"


def _unavailable(reason: str) -> NoReturn:
    """Skip on a developer machine without a working Podman; fail in CI."""
    if IN_CI:
        pytest.fail(f"{reason}; in CI container tests must not skip")
    pytest.skip(reason)


def _podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(PODMAN_CONF))
    return env


@pytest.fixture(scope="session")
def podman_socket() -> Iterator[str]:
    """A private `podman system service` on a temporary socket; skips without podman."""
    if shutil.which("podman") is None:
        _unavailable("podman is not installed")
    home = Path(tempfile.mkdtemp(prefix="ferry-podman-"))
    sock = home / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                               env=_podman_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        wait_until(lambda: sock.is_socket() or service.poll() is not None, timeout=30,
                   message="podman API socket")
        if service.poll() is not None:
            err = service.stderr.read().decode() if service.stderr else ""
            _unavailable(f"podman system service did not start: {err.strip()[:200]}")
        yield str(sock)
    finally:
        service.terminate()
        try:
            service.wait(10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def podman_image(podman_socket: str) -> str:
    """The busybox test image in Podman's store, built when missing."""
    env = _podman_env()
    if subprocess.run(["podman", "image", "exists", TEST_IMAGE], env=env).returncode != 0:
        subprocess.run([str(REPO_ROOT / "tests/images/build-busybox-image.sh"), "podman"],
                       env=env, check=True, capture_output=True)
    return TEST_IMAGE


@pytest.fixture(scope="session")
def podman_runtime(podman_socket: str, podman_image: str) -> PodmanRuntime:
    """A PodmanRuntime on the private socket; skips when Podman cannot start a container."""
    runtime = PodmanRuntime(runner_id="podman-tests", socket=podman_socket, grace_seconds=1.0)
    probe = Path(tempfile.mkdtemp(prefix="ferry-podman-probe-"))
    (probe / "ws").mkdir()
    (probe / "ctl").mkdir()
    spec = TaskSpec(run_id="probe", task_id="probe", node_id="probe",
                    options=RuntimeOptions(type=RuntimeType.PODMAN, image=podman_image),
                    workspace=probe / "ws", control_dir=probe / "ctl")
    try:
        handle = runtime.open(spec)
    except RuntimeUnavailable as exc:
        _unavailable(f"podman cannot start a container here: {exc}")
    try:
        result = handle.run_step(StepSpec(0, "probe", ["true"], {}), lambda _: None,
                                 threading.Event())
    finally:
        handle.close()
        shutil.rmtree(probe, ignore_errors=True)
    if not result.ok:
        _unavailable(f"podman cannot exec in a container here: {result.describe()}")
    return runtime
