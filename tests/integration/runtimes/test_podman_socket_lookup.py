"""Where `ferry run` finds Podman: the rootless socket under $XDG_RUNTIME_DIR (as the daemon
does), or `runner.containers.podman_socket` of `-c CONFIG`; and a missing socket's message
names a setting that exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.config import load_config
from runner.errors import RuntimeUnavailable
from runner.runtimes import podman

pytestmark = pytest.mark.podman
ROOT = Path(__file__).resolve().parents[3]


def _workflow(tmp_path: Path, image: str) -> Path:
    wf = tmp_path / "podman.yaml"
    wf.write_text('version: "1"\nnodes:\n  - id: inside\n'
                  f"    runtime: {{type: podman, image: {image}}}\n"
                  "    steps:\n      - run: cat /proc/1/comm\n")
    return wf


def _run(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    full.update({"FERRY_HOME": str(tmp_path / "home"), **env})
    return subprocess.run([sys.executable, "-m", "runner", "run", *args], capture_output=True,
                          text=True, cwd=tmp_path, env=full, timeout=300)


def test_ferry_run_finds_the_rootless_socket_under_xdg_runtime_dir(
        tmp_path: Path, podman_socket: str, podman_image: str) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "podman").mkdir(parents=True)
    (xdg / "podman" / "podman.sock").symlink_to(podman_socket)  # where rootless Podman puts it
    proc = _run(tmp_path, "-w", str(_workflow(tmp_path, podman_image)), "--json",
                env={"XDG_RUNTIME_DIR": str(xdg)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    doc = json.loads(proc.stdout.splitlines()[-1])["run"]
    assert doc["status"] == "Completed"


def test_ferry_run_uses_the_configured_podman_socket(tmp_path: Path, podman_socket: str,
                                                     podman_image: str) -> None:
    config = tmp_path / "ferry.yaml"
    config.write_text(yaml.safe_dump({"runner": {"containers": {"podman_socket":
                                                                 podman_socket}}}))
    assert load_config(config, environ={}).runner.containers.podman_socket == podman_socket
    proc = _run(tmp_path, "-w", str(_workflow(tmp_path, podman_image)), "-c", str(config),
                env={"XDG_RUNTIME_DIR": str(tmp_path / "empty")})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert "  [inside] podman-init" in proc.stdout


def test_a_missing_socket_names_the_setting_that_exists(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(podman, "ROOT_SOCKET", tmp_path / "no-root.sock")
    with pytest.raises(RuntimeUnavailable) as err:
        podman.find_socket(None, xdg_runtime_dir=str(tmp_path / "xdg"))
    message = str(err.value)
    assert f"tried {tmp_path / 'xdg' / 'podman' / 'podman.sock'}, {tmp_path / 'no-root.sock'}" \
        in message
    assert "runner.containers.podman_socket" in message
    # the setting it names is one the config file accepts
    config = tmp_path / "c.yaml"
    config.write_text("runner:\n  containers:\n    podman_socket: /run/user/1000/podman.sock\n")
    assert load_config(config, environ={}).runner.containers.podman_socket
