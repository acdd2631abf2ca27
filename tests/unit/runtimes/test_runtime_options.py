"""ContainerPolicy resolution and Podman socket discovery (pure logic, no engine)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from runner.errors import RuntimeRefused, RuntimeUnavailable
from runner.runtimes.docker import _split_image
from runner.runtimes.options import ContainerPolicy, Mount, parse_memory, parse_mount
from runner.runtimes.podman import find_socket
from runner.workflow.model import PullPolicy, RuntimeType
from runner.workflow.model import Runtime as RuntimeOptions


def _opts(**kw: object) -> RuntimeOptions:
    return RuntimeOptions(type=RuntimeType.DOCKER, **kw)  # type: ignore[arg-type]


def test_workflow_options_override_policy_defaults() -> None:
    policy = ContainerPolicy(default_image="base:1", network="bridge", memory="1g", cpus=2,
                             pids=100)
    s = policy.resolve(_opts(memory="256m", cpus=0.5, network="none", user="1000"))
    assert (s.image, s.network, s.memory, s.nano_cpus, s.pids, s.user) == (
        "base:1", "none", 256 * 1024**2, 500_000_000, 100, "1000")
    assert s.pull == PullPolicy.IF_NOT_PRESENT
    assert policy.resolve(_opts(image="x:2", pull=PullPolicy.NEVER)).pull == PullPolicy.NEVER


def test_an_image_is_required() -> None:
    with pytest.raises(RuntimeRefused, match=r"needs an image"):
        ContainerPolicy().resolve(_opts())


@pytest.mark.parametrize(("policy", "options", "match"), [
    (ContainerPolicy(), _opts(image="i", privileged=True), "privileged containers are refused"),
    (ContainerPolicy(), _opts(image="i", mounts=["/a:/b"]), "extra host mounts are refused"),
    (ContainerPolicy(allowed_images=("ferry-test/*",)), _opts(image="evil:1"),
     "image 'evil:1' is not allowed"),
    (ContainerPolicy(allowed_networks=("none",)), _opts(image="i", network="host"),
     "network 'host' is not allowed"),
    (ContainerPolicy(), _opts(image="i", memory="lots"), "'lots' is not a memory size"),
    (ContainerPolicy(allow_mounts=True), _opts(image="i", mounts=["rel:/b"]),
     "both paths must be absolute"),
])
def test_refusals_name_the_option(policy: ContainerPolicy, options: RuntimeOptions,
                                  match: str) -> None:
    with pytest.raises(RuntimeRefused, match=match):
        policy.resolve(options, where="node 'n' runtime")


def test_allowed_privileged_and_mounts_pass() -> None:
    policy = ContainerPolicy(allow_privileged=True, allow_mounts=True,
                             allowed_images=("ferry-test/*",))
    s = policy.resolve(_opts(image="ferry-test/busybox:1", privileged=True,
                             mounts=["/data:/data:ro"]))
    assert s.privileged is True
    assert s.mounts == (Mount("/data", "/data", True),)


@pytest.mark.parametrize(("text", "size"), [("512m", 512 * 1024**2), ("1g", 1024**3),
                                            ("1.5GiB", int(1.5 * 1024**3)), ("4096", 4096),
                                            (1000, 1000)])
def test_memory_sizes(text: str | int, size: int) -> None:
    assert parse_memory(text) == size


def test_mount_syntax() -> None:
    assert parse_mount("/a:/b") == Mount("/a", "/b", False)
    assert parse_mount("/a:/b:rw") == Mount("/a", "/b", False)
    with pytest.raises(RuntimeRefused, match="is not host:container"):
        parse_mount("/a:/b:bogus")


@pytest.mark.parametrize(("image", "split"), [
    ("busybox", ("busybox", "latest")), ("ferry-test/busybox:1", ("ferry-test/busybox", "1")),
    ("localhost:5000/x", ("localhost:5000/x", "latest")),
    ("localhost:5000/x:2", ("localhost:5000/x", "2")),
    ("x@sha256:abc", ("x", "sha256:abc")),
])
def test_pull_reference_split(image: str, split: tuple[str, str]) -> None:
    assert _split_image(image) == split


def test_podman_socket_discovery(tmp_path: Path) -> None:
    assert find_socket("/some/where.sock") == "unix:///some/where.sock"
    assert find_socket("tcp://h:1") == "tcp://h:1"
    (tmp_path / "podman").mkdir()
    path = tmp_path / "podman" / "podman.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    try:
        assert find_socket(None, xdg_runtime_dir=str(tmp_path)) == f"unix://{path}"
    finally:
        listener.close()
    missing = tmp_path / "nothing"
    if not Path("/run/podman/podman.sock").is_socket():
        with pytest.raises(RuntimeUnavailable, match="podman API socket not found"):
            find_socket(None, xdg_runtime_dir=str(missing))
