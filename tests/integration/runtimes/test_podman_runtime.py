"""Podman through its Docker-compatible socket: same code, containers cleaned up, reaped."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from runner.errors import RuntimeUnavailable
from runner.runtimes.podman import PodmanRuntime
from runner.workflow.model import Runtime as RuntimeOptions
from runner.workflow.model import RuntimeType
from tests.integration.runtimes.runtime_kit import Task, task_spec

pytestmark = pytest.mark.podman


def _count(sock: str, runner_id: str) -> int:
    client = docker.DockerClient(base_url=f"unix://{sock}")
    try:
        return len(client.containers.list(all=True,
                                          filters={"label": f"ferry.runner={runner_id}"}))
    finally:
        client.close()


def test_podman_task_runs_in_its_own_container_and_is_removed(
        tmp_path: Path, podman_runtime: PodmanRuntime, podman_socket: str,
        podman_image: str) -> None:
    runtime = PodmanRuntime(runner_id="podman-own", socket=podman_socket, grace_seconds=1.0)
    spec = task_spec(tmp_path, RuntimeOptions(type=RuntimeType.PODMAN, image=podman_image))
    task = Task(runtime.open(spec), spec.workspace, spec.control_dir)
    assert _count(podman_socket, "podman-own") == 1
    result, out = task.run("cat /proc/1/comm; echo $PWD; echo hi > f")
    assert result.ok
    assert out.text == "podman-init\n/workspace\n"
    assert (spec.workspace / "f").read_text() == "hi\n"
    task.handle.close()
    assert _count(podman_socket, "podman-own") == 0
    # leftovers of an inactive run are reaped through the same API
    runtime.open(task_spec(tmp_path, RuntimeOptions(type=RuntimeType.PODMAN, image=podman_image),
                           name="left", run_id="dead-run"))
    assert runtime.reap({"other-run"}) == 1
    assert _count(podman_socket, "podman-own") == 0


def test_missing_image_on_podman_is_one_line(tmp_path: Path, podman_runtime: PodmanRuntime,
                                             podman_socket: str) -> None:
    runtime = PodmanRuntime(runner_id="podman-miss", socket=podman_socket)
    image = "localhost/ferry-test/absent:9"
    with pytest.raises(RuntimeUnavailable, match="image localhost/ferry-test/absent:9 ") as info:
        runtime.open(task_spec(tmp_path, RuntimeOptions(type=RuntimeType.PODMAN, image=image)))
    assert "\n" not in str(info.value)
