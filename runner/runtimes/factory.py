"""The runtime set, built in one place: the host runtime plus the container engines a caller
asks for (`ferry run` builds those its workflow names; the daemon builds every one).

Docker is found the way the docker CLI finds it (DOCKER_HOST, else the local socket); Podman
through its API socket (`runner.runtimes.podman.find_socket`). Engine clients are made on first
use, so a runtime nobody uses costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.runtimes.base import Runtime
from runner.runtimes.direct import DirectRuntime
from runner.runtimes.docker import DockerRuntime
from runner.runtimes.options import ContainerPolicy
from runner.runtimes.podman import PodmanRuntime
from runner.runtimes.spawn import Credentials
from runner.runtimes.stepenv import StepUser
from runner.runtimes.tracking import Tracking

CONTAINER_KINDS = ("docker", "podman")


@dataclass(frozen=True)
class RuntimeSettings:
    """How runtimes are made: from the runner config, or defaults for `ferry run`."""

    grace_seconds: float = 5.0
    runner_id: str = "local"
    policy: ContainerPolicy = field(default_factory=ContainerPolicy)
    podman_socket: str | None = None
    xdg_runtime_dir: str | None = None
    step_user: StepUser | None = None
    """Host steps run as this user, containers default to its uid:gid (a root runner)."""
    tracking: Tracking = Tracking.AUTO
    """How host steps' processes are tracked (`runner.runtimes.tracking`)."""


def container_runtime(kind: str, settings: RuntimeSettings) -> DockerRuntime | None:
    """A `docker` or `podman` runtime (None for any other kind)."""
    owner = settings.step_user.owner if settings.step_user else None
    if kind == "docker":

        def make() -> Any:
            import docker

            return docker.from_env(timeout=120)

        return DockerRuntime(make, runner_id=settings.runner_id, policy=settings.policy,
                             grace_seconds=settings.grace_seconds, engine_name="docker",
                             default_user=owner)
    if kind == "podman":
        return PodmanRuntime(runner_id=settings.runner_id, socket=settings.podman_socket,
                             xdg_runtime_dir=settings.xdg_runtime_dir, policy=settings.policy,
                             grace_seconds=settings.grace_seconds, default_user=owner)
    return None


def build_runtimes(settings: RuntimeSettings, host_env: Mapping[str, str],
                   kinds: Iterable[str] = CONTAINER_KINDS) -> dict[str, Runtime]:
    """`direct` (steps on the host with `host_env`: the allowed part of the runner's
    environment, `runtimes.stepenv`) plus the container runtimes of `kinds`."""
    user = settings.step_user
    creds = Credentials(user.uid, user.gid, user.groups) if user else None
    runtimes: dict[str, Runtime] = {"direct": DirectRuntime(host_env, settings.grace_seconds,
                                                            creds=creds,
                                                            tracking=settings.tracking)}
    for kind in sorted(set(kinds) - {"direct"}):
        runtime = container_runtime(kind, settings)
        if runtime is not None:
            runtimes[kind] = runtime
    return runtimes


def kinds_used(workflow: Mapping[str, Any]) -> set[str]:
    """The runtime types a workflow document's nodes and templates name."""
    kinds: set[str] = set()
    for part in [*(workflow.get("nodes") or []), *(workflow.get("templates") or [])]:
        runtime = part.get("runtime") or {}
        if isinstance(runtime, dict) and runtime.get("type"):
            kinds.add(str(runtime["type"]))
    return kinds
