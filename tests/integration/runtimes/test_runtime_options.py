"""`runtime.working_dir`, `user`, `network` and `options` inside real containers (Docker and
Podman) and on the host: each one observed from inside the step; what the policy refuses
creates no container."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from runner.errors import RuntimeRefused, RuntimeUnavailable
from runner.runtimes.base import Runtime
from runner.runtimes.direct import DirectRuntime
from runner.runtimes.docker import DockerRuntime
from runner.runtimes.options import ContainerPolicy
from runner.runtimes.podman import PodmanRuntime
from runner.workflow.model import Runtime as RuntimeOptions
from runner.workflow.model import RuntimeType
from tests.integration.runtimes.runtime_kit import Task, task_spec

OPTIONS = ["--hostname ferrybox", "--add-host=registry.local:10.9.8.7", "--tmpfs /scratch",
           "--cap-drop", "ALL", "--security-opt no-new-privileges", "--shm-size=16m"]


@pytest.fixture(params=["docker", "podman"])
def engine(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, Runtime]]:
    """(kind, image, a runtime whose containers are removed after the test)."""
    kind = request.param
    if kind == "docker":
        image = request.getfixturevalue("docker_image")
        runtime: Runtime = DockerRuntime(docker.from_env, runner_id=f"opt-{uuid.uuid4().hex[:8]}",
                                         grace_seconds=1.0)
    else:
        podman: PodmanRuntime = request.getfixturevalue("podman_runtime")
        image = request.getfixturevalue("podman_image")
        runtime = podman
    yield kind, image, runtime


def _options(kind: str, image: str, **extra: object) -> RuntimeOptions:
    return RuntimeOptions(type=RuntimeType(kind), image=image, **extra)  # type: ignore[arg-type]


def test_working_dir_user_network_and_options_apply_inside_the_container(
        tmp_path: Path, engine: tuple[str, str, Runtime]) -> None:
    kind, image, runtime = engine
    user = f"{os.getuid()}:{os.getgid()}"
    spec = task_spec(tmp_path, _options(kind, image, working_dir="sub/dir", user=user,
                                        network="none", options=OPTIONS))
    (spec.workspace / "sub" / "dir").mkdir(parents=True)
    task = Task(runtime.open(spec), spec.workspace, spec.control_dir)
    try:
        result, out = task.run("pwd; id -u; hostname; grep -c registry.local /etc/hosts; "
                               "ls /sys/class/net; touch /scratch/x && echo tmpfs-ok; "
                               "grep NoNewPrivs /proc/self/status | tr -d '\\t'; "
                               "grep CapEff /proc/self/status | tr -d '\\t'")
        assert result.ok, out.text
        assert out.text.splitlines() == ["/workspace/sub/dir", str(os.getuid()), "ferrybox",
                                         "1", "lo", "tmpfs-ok", "NoNewPrivs:1",
                                         "CapEff:0000000000000000"]
    finally:
        task.handle.close()


@pytest.mark.parametrize(("options", "fragment"), [
    (["--privileged"], "'--privileged' widens the container"),
    (["--cap-add=SYS_ADMIN"], "'--cap-add' widens the container"),
    (["--pid host"], "'--pid' widens the container"),
    (["--network=host"], "'--network host' shares the host's network"),
    (["-v /etc:/host-etc"], "'-v' mounts a host path"),
    (["--security-opt seccomp=unconfined"], "only no-new-privileges is allowed"),
    (["--env X=1"], "'--env' is not an option Ferry applies"),
])
def test_options_the_policy_refuses_create_nothing(
        tmp_path: Path, docker_image: str, options: list[str], fragment: str) -> None:
    runner_id = f"opt-{uuid.uuid4().hex[:8]}"
    runtime = DockerRuntime(docker.from_env, runner_id=runner_id)
    spec = task_spec(tmp_path, _options("docker", docker_image, options=options))
    with pytest.raises(RuntimeRefused, match=fragment):
        runtime.open(spec)
    client = docker.from_env()
    try:
        assert client.containers.list(all=True,
                                      filters={"label": f"ferry.runner={runner_id}"}) == []
    finally:
        client.close()


def test_allowed_options_reach_the_engine_when_the_runner_allows_them(
        tmp_path: Path, docker_image: str) -> None:
    mounted = tmp_path / "host-dir"
    mounted.mkdir()
    (mounted / "f").write_text("from the host\n")
    runtime = DockerRuntime(docker.from_env, runner_id=f"opt-{uuid.uuid4().hex[:8]}",
                            policy=ContainerPolicy(allow_mounts=True, allow_privileged=True),
                            grace_seconds=1.0)
    spec = task_spec(tmp_path, _options("docker", docker_image,
                                        options=[f"-v {mounted}:/from-host:ro",
                                                 "--cap-add=NET_ADMIN"]))
    try:
        task = Task(runtime.open(spec), spec.workspace, spec.control_dir)
    except RuntimeUnavailable as exc:  # a sandbox that forbids capabilities: one line
        assert "\n" not in str(exc)
        return
    try:
        result, out = task.run("cat /from-host/f; touch /from-host/g 2>/dev/null || echo ro")
        assert result.ok and out.text == "from the host\nro\n"
    finally:
        task.handle.close()


def test_working_dir_on_the_host(tmp_path: Path) -> None:
    runtime = DirectRuntime({"PATH": "/usr/bin:/bin"}, grace_seconds=1.0)
    spec = task_spec(tmp_path, RuntimeOptions(working_dir="nested"))
    with pytest.raises(RuntimeUnavailable, match=r"runtime\.working_dir: .*nested is not a dir"):
        runtime.open(spec)
    (spec.workspace / "nested").mkdir()
    task = Task(runtime.open(spec), spec.workspace, spec.control_dir)
    result, out = task.run("pwd")
    assert result.ok and out.text == f"{spec.workspace / 'nested'}\n"
