"""Fixtures of the leak suite: the step user, a Podman API service reachable the way Ferry finds
it ($XDG_RUNTIME_DIR/podman/podman.sock), and directories an unprivileged step user can reach."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, TEST_IMAGE
from tests.helpers import IN_CI, wait_until

STEP_USER = "ferry-step"
PODMAN_CONF = REPO_ROOT / "tests/images/podman-containers.conf"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason}; in CI the leak suite must not skip")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def step_user() -> str:
    """The unprivileged user a root daemon runs host steps as (scripts/setup creates it)."""
    if os.geteuid() != 0:
        _unavailable("the leak suite's daemon runs as root (it switches host steps to a user)")
    try:
        pwd.getpwnam(STEP_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--create-home", "--home-dir",
                        f"/var/lib/{STEP_USER}", "--shell", "/usr/sbin/nologin", STEP_USER],
                       check=True)
    return STEP_USER


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A directory every user may traverse (pytest's tmp dirs are root's 0700): the daemon's
    FERRY_HOME goes below it, as /var/lib/ferry is below /var/lib."""
    root = Path(tempfile.mkdtemp(prefix="ferry-leak-"))
    os.chmod(root, 0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def podman_runtime_dir() -> Iterator[str]:
    """An XDG_RUNTIME_DIR whose podman/podman.sock is a private `podman system service`, with
    the test image in Podman's store."""
    if shutil.which("podman") is None:
        _unavailable("podman is not installed")
    base = Path(tempfile.mkdtemp(prefix="ferry-leak-podman-"))
    sock = base / "podman" / "podman.sock"
    sock.parent.mkdir()
    env = {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(PODMAN_CONF))}
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: sock.is_socket() or service.poll() is not None, timeout=30,
                   message="podman API socket")
        if service.poll() is not None:
            _unavailable("podman system service did not start")
        if subprocess.run(["podman", "image", "exists", TEST_IMAGE], env=env).returncode != 0:
            subprocess.run([str(REPO_ROOT / "tests/images/build-busybox-image.sh"), "podman"],
                           env=env, check=True, capture_output=True)
        yield str(base)
    finally:
        service.terminate()
        try:
            service.wait(10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        shutil.rmtree(base, ignore_errors=True)
