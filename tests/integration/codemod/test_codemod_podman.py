"""Codemod steps in a Podman task container: the Codemod CLI mounted read-only into a Debian 12
userland image (built locally, no registry) changes the project exactly as on the host. Podman
is the private API service of the runtime tests (`tests/integration/runtimes/conftest.py`):
skipped on a machine without Podman, FAILS in CI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.differential.codemod_support import PROJECT, ferry_run, make_project
from tests.helpers.codemod import codemod_cli
from tests.integration.codemod.test_codemod_steps import _package
from tests.integration.runtimes.conftest import _podman_env, podman_socket  # noqa: F401

IMAGE = "ferry-test/debian-glibc:1"
HOST = """\
version: "1"
nodes:
  - id: apply
    name: Apply
    steps:
      - name: transform
        js-ast-grep: {js_file: scripts/codemod.ts, include: ["src/**/*.ts"]}
"""
PODMAN = HOST.replace("    steps:\n",
                      "    runtime: {type: podman, image: IMAGE}\n    steps:\n") + """\
      - name: where
        run: |
          test -f /ferry-tools/codemod && echo "the CLI is mounted"
          test -f /run/.containerenv && echo "in a Podman container"
"""


@pytest.fixture(scope="module")
def debian_image(podman_socket: str) -> str:  # noqa: F811
    """The glibc test image in Podman's store, built from this machine's packages if missing."""
    env = _podman_env()
    if subprocess.run(["podman", "image", "exists", IMAGE], env=env).returncode != 0:
        built = subprocess.run([str(REPO_ROOT / "tests/images/build-debian-image.sh"), "podman"],
                               env=env, capture_output=True, text=True)
        assert built.returncode == 0, built.stderr[-2000:]
    return IMAGE


def test_codemod_step_runs_inside_a_podman_container(
        tmp_path: Path, podman_socket: str, debian_image: str) -> None:  # noqa: F811
    binary = codemod_cli().path
    config = tmp_path / "ferry.yaml"
    config.write_text(yaml.safe_dump({"runner": {"containers": {"podman_socket":
                                                                 podman_socket}}}))
    host = ferry_run(binary, _package(tmp_path / "host", HOST),
                     make_project(tmp_path / "host" / "project", PROJECT), tmp_path / "hh")
    assert host.exit == 0, host.output[-3000:]
    boxed = ferry_run(binary, _package(tmp_path / "box", PODMAN.replace("IMAGE", debian_image)),
                      make_project(tmp_path / "box" / "project", PROJECT), tmp_path / "bh",
                      extra=["-c", str(config)])
    assert boxed.exit == 0, boxed.output[-3000:]
    assert "[apply] Modified file: src/a/one.ts" in boxed.output
    assert "the CLI is mounted" in boxed.output and "in a Podman container" in boxed.output
    assert boxed.diff == host.diff and "src/a/one.ts" in host.diff
