"""Docker-specific behaviour: one container per task, cleanup whatever happens, policy, reaping."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from runner.errors import RuntimeRefused, RuntimeUnavailable
from runner.runtimes.docker import IDLE_COMMAND, DockerRuntime
from runner.runtimes.options import ContainerPolicy
from runner.workflow.model import PullPolicy, RuntimeType
from runner.workflow.model import Runtime as RuntimeOptions
from tests.integration.runtimes.runtime_kit import Output, Task, task_spec

pytestmark = pytest.mark.docker


@pytest.fixture
def client(docker_image: str) -> Iterator[docker.DockerClient]:
    """A Docker SDK client (the engine answers and the test image exists)."""
    engine = docker.from_env()
    yield engine
    engine.close()


@pytest.fixture
def runner_id(client: docker.DockerClient) -> Iterator[str]:
    """A runner id of our own; its containers are force-removed after the test."""
    rid = f"test-{uuid.uuid4().hex[:10]}"
    yield rid
    for container in client.containers.list(all=True, filters={"label": f"ferry.runner={rid}"}):
        container.remove(force=True)


def _options(image: str, **extra: object) -> RuntimeOptions:
    return RuntimeOptions(type=RuntimeType.DOCKER, image=image, **extra)  # type: ignore[arg-type]


def _open(tmp_path: Path, runtime: DockerRuntime, image: str, name: str = "t",
          **extra: object) -> Task:
    spec = task_spec(tmp_path, _options(image, **extra), name=name, run_id="run-a")
    return Task(runtime.open(spec), spec.workspace, spec.control_dir)


def _containers(client: docker.DockerClient, runner_id: str) -> list[str]:
    return [c.id for c in client.containers.list(all=True,
                                                 filters={"label": f"ferry.runner={runner_id}"})]


def test_steps_of_a_task_share_one_container_and_tasks_do_not(
        tmp_path: Path, docker_image: str, runner_id: str) -> None:
    runtime = DockerRuntime(docker.from_env, runner_id=runner_id, grace_seconds=1.0)
    first = _open(tmp_path, runtime, docker_image, name="one")
    second = _open(tmp_path, runtime, docker_image, name="two")
    try:
        assert first.run("echo secret > /tmp/shared; hostname > /workspace/host1")[0].ok
        same, out = first.run("cat /tmp/shared; hostname")
        other, out2 = second.run("cat /tmp/shared 2>/dev/null || echo absent; hostname")
        assert same.ok and other.ok
        host1 = (first.workspace / "host1").read_text()
        assert out.text == "secret\n" + host1
        assert out2.text.startswith("absent\n")
        assert out2.text.split("\n")[1] != host1.strip()
    finally:
        first.handle.close()
        second.handle.close()


def test_container_carries_labels_env_limits_and_init(
        tmp_path: Path, docker_image: str, runner_id: str, client: docker.DockerClient) -> None:
    runtime = DockerRuntime(docker.from_env, runner_id=runner_id,
                            policy=ContainerPolicy(memory="64m", pids=50))
    spec = task_spec(tmp_path, _options(docker_image, cpus=0.5, network="none"),
                     env={"TASK_VAR": "v"}, run_id="run-l")
    handle = runtime.open(spec)
    try:
        (cid,) = _containers(client, runner_id)
        attrs = client.api.inspect_container(cid)
        assert attrs["Config"]["Labels"] == {"ferry.run": "run-l", "ferry.task": spec.task_id,
                                             "ferry.node": spec.node_id,
                                             "ferry.runner": runner_id}
        # task variables (secrets among them) reach each exec, never the create config
        assert "TASK_VAR=v" not in (attrs["Config"]["Env"] or [])
        assert attrs["Config"]["Cmd"] == IDLE_COMMAND
        assert attrs["Config"]["WorkingDir"] == "/workspace"
        assert attrs["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
        host = attrs["HostConfig"]
        assert (host["Memory"], host["PidsLimit"], host["NanoCpus"]) == (64 * 1024**2, 50,
                                                                          500_000_000)
        assert (host["Init"], host["NetworkMode"], host["Privileged"]) == (True, "none", False)
        task = Task(handle, spec.workspace, spec.control_dir)
        result, out = task.run("cat /proc/1/comm; ls /sys/class/net; echo $TASK_VAR")
        assert result.ok
        assert out.text == "docker-init\nlo\nv\n"
    finally:
        handle.close()


@pytest.mark.parametrize("ending", ["success", "failure", "timeout", "cancel"])
def test_container_is_removed_whatever_the_outcome(
        tmp_path: Path, docker_image: str, runner_id: str, client: docker.DockerClient,
        ending: str) -> None:
    runtime = DockerRuntime(docker.from_env, runner_id=runner_id, grace_seconds=1.0)
    task = _open(tmp_path, runtime, docker_image)
    assert len(_containers(client, runner_id)) == 1
    cancel = threading.Event()
    script = {"success": "true", "failure": "exit 2", "timeout": "sleep 300",
              "cancel": "echo go; sleep 300"}[ending]
    sink = Output(hook=lambda chunk: cancel.set() if b"go" in chunk else None)
    result, _ = task.run(script, timeout=1.0 if ending == "timeout" else 60, cancel=cancel,
                         sink=sink)
    assert result.ok == (ending == "success")
    assert result.reason == {"timeout": "timeout", "cancel": "canceled"}.get(ending)
    task.handle.close()
    assert _containers(client, runner_id) == []


def test_leftover_background_processes_die_with_their_step(
        tmp_path: Path, docker_image: str, runner_id: str) -> None:
    runtime = DockerRuntime(docker.from_env, runner_id=runner_id, grace_seconds=1.0)
    task = _open(tmp_path, runtime, docker_image)
    try:
        assert task.run("sleep 300 > /dev/null 2>&1 &\necho $! > /tmp/bg.pid")[0].ok
        _result, out = task.run("kill -0 $(cat /tmp/bg.pid) 2>/dev/null && echo alive || echo "
                               "gone")
        assert out.text == "gone\n"
        # A background job still holding the output stream must not keep the step running.
        held, _ = task.run("sleep 300 &\necho started", timeout=30)
        assert held.ok
    finally:
        task.handle.close()


def test_workspace_files_belong_to_the_host_user_even_with_another_user(
        tmp_path: Path, docker_image: str, runner_id: str) -> None:
    runtime = DockerRuntime(docker.from_env, runner_id=runner_id)
    task = _open(tmp_path, runtime, docker_image, user="4321:4321")
    task.workspace.chmod(0o777)
    result, out = task.run("id -u; echo data > made-inside")
    assert result.ok and out.text == "4321\n"
    assert (task.workspace / "made-inside").stat().st_uid == 4321
    task.handle.close()
    made = (task.workspace / "made-inside").stat()
    assert (made.st_uid, made.st_gid) == (os.getuid(), os.getgid())


def test_reap_removes_containers_of_inactive_runs_only(
        tmp_path: Path, docker_image: str, runner_id: str, client: docker.DockerClient) -> None:
    def leftover(run_id: str, runner: str) -> str:
        return str(client.containers.run(
            docker_image, IDLE_COMMAND, detach=True, init=True,
            labels={"ferry.run": run_id, "ferry.runner": runner, "ferry.task": "x"}).id)

    dead = leftover("run-dead", runner_id)
    active = leftover("run-active", runner_id)
    foreign_runner = f"{runner_id}-other"
    foreign = leftover("run-dead", foreign_runner)
    try:
        runtime = DockerRuntime(docker.from_env, runner_id=runner_id)
        assert runtime.reap({"run-active"}) == 1
        assert _containers(client, runner_id) == [active]
        assert _containers(client, foreign_runner) == [foreign]
        assert dead not in _containers(client, runner_id)
        assert runtime.reap(set()) == 1
        assert _containers(client, runner_id) == []
    finally:
        client.api.remove_container(foreign, force=True)


def test_missing_image_is_a_one_line_error(tmp_path: Path, docker_image: str,
                                           runner_id: str) -> None:
    runtime = DockerRuntime(docker.from_env, runner_id=runner_id)
    image = "ferry-test/does-not-exist:0"
    spec = task_spec(tmp_path, _options(image))
    with pytest.raises(RuntimeUnavailable) as info:
        runtime.open(spec)
    message = str(info.value)
    assert message.startswith(f"image {image} is not present and cannot be pulled: ")
    assert "\n" not in message
    spec_never = task_spec(tmp_path, _options(image, pull=PullPolicy.NEVER), name="n")
    with pytest.raises(RuntimeUnavailable, match="pull policy is 'never'"):
        runtime.open(spec_never)


@pytest.mark.parametrize(("extra", "match"), [
    ({"privileged": True}, "privileged containers are refused"),
    ({"mounts": ["/etc:/host-etc:ro"]}, "extra host mounts are refused"),
])
def test_refused_requests_create_nothing(tmp_path: Path, docker_image: str, runner_id: str,
                                         client: docker.DockerClient, extra: dict[str, object],
                                         match: str) -> None:
    runtime = DockerRuntime(docker.from_env, runner_id=runner_id)
    with pytest.raises(RuntimeRefused, match=match):
        _open(tmp_path, runtime, docker_image, **extra)
    assert _containers(client, runner_id) == []


def test_allowed_mounts_are_bound(tmp_path: Path, docker_image: str, runner_id: str) -> None:
    extra_dir = tmp_path / "extra"
    extra_dir.mkdir()
    (extra_dir / "f").write_text("mounted\n")
    runtime = DockerRuntime(docker.from_env, runner_id=runner_id,
                            policy=ContainerPolicy(allow_mounts=True))
    task = _open(tmp_path, runtime, docker_image, mounts=[f"{extra_dir}:/extra:ro"])
    try:
        _result, out = task.run("cat /extra/f; touch /extra/g 2>/dev/null || echo read-only")
        assert out.text == "mounted\nread-only\n"
    finally:
        task.handle.close()


def test_allowed_privileged_reaches_the_engine(tmp_path: Path, docker_image: str,
                                               runner_id: str, client: docker.DockerClient,
                                               ) -> None:
    runtime = DockerRuntime(docker.from_env, runner_id=runner_id,
                            policy=ContainerPolicy(allow_privileged=True))
    try:
        task = _open(tmp_path, runtime, docker_image, privileged=True)
    except RuntimeUnavailable as exc:
        # Some sandboxes (this CI VM) forbid privileged containers: the engine's refusal is one
        # line, and the half-created container is removed.
        assert str(exc).startswith(f"cannot start a container from image {docker_image}: ")
        assert "\n" not in str(exc)
        assert _containers(client, runner_id) == []
        return
    try:
        (cid,) = _containers(client, runner_id)
        assert client.api.inspect_container(cid)["HostConfig"]["Privileged"] is True
    finally:
        task.handle.close()


def test_engine_down_is_a_one_line_error(tmp_path: Path) -> None:
    runtime = DockerRuntime(lambda: docker.DockerClient(base_url="unix:///nonexistent.sock"),
                            runner_id="r")
    with pytest.raises(RuntimeUnavailable, match=r"^docker engine is not reachable: ") as info:
        runtime.open(task_spec(tmp_path, _options("ferry-test/busybox:1")))
    assert "\n" not in str(info.value)
