"""The Docker runtime: one container per task, each step `exec`ed into it (docker SDK).

The SDK is imported lazily: `ferry validate` and host-only runs never import it. The container
runs an init process and an idle command; the workspace is bind-mounted at /workspace (the
working directory) and the task's control dir at /ferry. Podman uses this same code through its
Docker-compatible API socket (`runner.runtimes.podman`).
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.errors import RuntimeUnavailable
from runner.runtimes.base import TaskSpec
from runner.runtimes.container_options import ContainerOptions
from runner.runtimes.docker_task import (
    CONTROL_MOUNT,
    WORKSPACE_MOUNT,
    ContainerTask,
    host_user,
    one_line,
)
from runner.runtimes.ledger import Ledger, end_earlier_attempt
from runner.runtimes.ledger import read as read_ledger
from runner.runtimes.options import ContainerPolicy, ContainerSettings
from runner.runtimes.proctree import ProcessFinder
from runner.workflow.model import PullPolicy

IDLE_COMMAND = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"]
"""Keeps the task container alive between steps and stops at once on SIGTERM."""

LABEL_RUN = "ferry.run"
LABEL_TASK = "ferry.task"
LABEL_NODE = "ferry.node"
LABEL_RUNNER = "ferry.runner"

ClientFactory = Callable[[], Any]
"""Returns a `docker.DockerClient` (e.g. `docker.from_env`); called once, lazily."""

_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def host_extras(extra: ContainerOptions) -> dict[str, Any]:
    """The `runtime.options` that go in the container's host config (only those given)."""
    import docker.types

    out: dict[str, Any] = {}
    if extra.shm_size:
        out["shm_size"] = extra.shm_size
    if extra.read_only:
        out["read_only"] = True
    if extra.tmpfs:
        out["tmpfs"] = dict(extra.tmpfs)
    if extra.cap_drop:
        out["cap_drop"] = list(extra.cap_drop)
    if extra.cap_add:
        out["cap_add"] = list(extra.cap_add)
    if extra.security_opt:
        out["security_opt"] = list(extra.security_opt)
    if extra.extra_hosts:
        out["extra_hosts"] = dict(extra.extra_hosts)
    if extra.ulimits:
        out["ulimits"] = [docker.types.Ulimit(name=n, soft=s, hard=h) for n, s, h in extra.ulimits]
    if extra.devices:
        out["devices"] = list(extra.devices)
    for key, arg in (("pid", "pid_mode"), ("ipc", "ipc_mode"), ("uts", "uts_mode"),
                     ("userns", "userns_mode"), ("cgroupns", "cgroupns")):
        if key in extra.namespaces:
            out[arg] = extra.namespaces[key]
    return out


def _split_image(image: str) -> tuple[str, str]:
    """Repository and tag (or digest) for a pull; a bare name means `latest`."""
    if "@" in image:
        repo, digest = image.split("@", 1)
        return repo, digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1:]
    return image, "latest"


class DockerRuntime:
    """Runs each task in its own container on a Docker-API engine (Docker, or Podman's socket)."""

    def __init__(self, client_factory: ClientFactory, *, runner_id: str,
                 policy: ContainerPolicy | None = None, grace_seconds: float = 5.0,
                 engine_name: str = "docker", default_user: str | None = None) -> None:
        self.name = engine_name
        self._default_user = default_user
        """`uid:gid` containers run as when the workflow names none (the step user's), else
        the uid:gid running Ferry."""
        self._factory = client_factory
        self._runner_id = runner_id
        self._policy = policy or ContainerPolicy()
        self._grace = grace_seconds
        self._client: Any = None
        self._lock = threading.Lock()
        self._finder = ProcessFinder()

    def client(self) -> Any:
        """The engine client, created on first use; RuntimeUnavailable if the engine is down."""
        with self._lock:
            if self._client is None:
                try:
                    client = self._factory()
                    client.ping()
                except Exception as exc:
                    raise RuntimeUnavailable(
                        f"{self.name} engine is not reachable: {one_line(exc)}") from exc
                self._client = client
            return self._client

    def open(self, spec: TaskSpec) -> ContainerTask:
        """Check the policy, make sure the image is there, create and start the container."""
        settings = self._policy.resolve(spec.options, where=f"node '{spec.node_id}' runtime")
        client = self.client()
        notes = (self._end_earlier_attempt(client.api, spec.ledger)
                 if spec.ledger is not None else [])
        self._ensure_image(client, settings)
        api = client.api
        owner = self._default_user or host_user()
        user = settings.user or owner
        labels = {LABEL_RUN: spec.run_id, LABEL_TASK: spec.task_id, LABEL_NODE: spec.node_id,
                  LABEL_RUNNER: self._runner_id}
        binds = {str(spec.workspace): {"bind": WORKSPACE_MOUNT, "mode": "rw"},
                 str(spec.control_dir): {"bind": CONTROL_MOUNT, "mode": "rw"}}
        for mount in settings.mounts:
            binds[mount.source] = {"bind": mount.target, "mode": "ro" if mount.read_only
                                   else "rw"}
        for tool in spec.mounts:  # Ferry's own (the Codemod CLI...), never the workflow's
            binds[str(tool.source)] = {"bind": tool.target, "mode": "ro"}
        host_config = api.create_host_config(
            binds=binds, init=True, network_mode=settings.network,
            mem_limit=settings.memory, nano_cpus=settings.nano_cpus,
            pids_limit=settings.pids, privileged=settings.privileged,
            **host_extras(settings.extra))
        name = _NAME_UNSAFE.sub("-", f"ferry-{spec.task_id[:13]}-{uuid.uuid4().hex[:6]}")
        # The name is on disk before the container exists: a later attempt removes it.
        ledger = Ledger(spec.ledger, self.name) if spec.ledger is not None else None
        try:
            if ledger is not None:
                ledger.record(container=name, engine=self.name)
            container_id = self._create(api, settings, spec, labels, user, name, host_config)
        except BaseException:
            if ledger is not None:
                ledger.close()
            raise
        chown_to = owner if settings.user and settings.user != owner else None
        task = ContainerTask(api, container_id, workspace=spec.workspace,
                             control_dir=spec.control_dir, grace_seconds=self._grace,
                             finder=self._finder, chown_to=chown_to, engine_name=self.name,
                             env=spec.env, ledger=ledger, mounts=spec.mounts,
                             workdir=settings.working_dir or WORKSPACE_MOUNT)
        task.notes = notes
        return task

    @staticmethod
    def _create(api: Any, settings: ContainerSettings, spec: TaskSpec, labels: dict[str, str],
                user: str, name: str, host_config: Any) -> str:
        """Create and start the task's container; its id."""
        workdir = settings.working_dir or WORKSPACE_MOUNT
        try:
            # No environment here: the create config is what `docker inspect` shows, and the
            # task's variables may hold secrets. Every exec gets them instead.
            created = api.create_container(
                settings.image, command=IDLE_COMMAND,
                working_dir=workdir, labels=labels, user=user, name=name,
                hostname=settings.extra.hostname, host_config=host_config, detach=True)
        except Exception as exc:
            raise RuntimeUnavailable(f"cannot create a container from image {settings.image}: "
                                     f"{one_line(exc)}") from exc
        container_id = str(created["Id"])
        try:
            api.start(container_id)
        except Exception as exc:
            with contextlib.suppress(Exception):
                api.remove_container(container_id, force=True)
            raise RuntimeUnavailable(f"cannot start a container from image {settings.image}: "
                                     f"{one_line(exc)}") from exc
        return container_id

    def _end_earlier_attempt(self, api: Any, path: Path) -> list[str]:
        """Remove the container an earlier attempt of the task recorded (killing what runs in
        it) and end its other recorded processes; RuntimeUnavailable when that fails, so the
        task never runs while an earlier attempt of it still runs. Returns the log lines."""
        recorded = read_ledger(path)
        if recorded is None:
            return []
        notes = []
        for engine, name in recorded.containers:
            if engine != self.name:
                continue
            try:
                api.remove_container(name, force=True, v=True)
            except Exception as exc:
                if getattr(getattr(exc, "response", None), "status_code", None) != 404:
                    raise RuntimeUnavailable(
                        f"the container {name} of an earlier attempt of this task cannot be "
                        f"removed: {one_line(exc)}") from exc
                continue
            notes.append(f"removed the container {name} of an earlier attempt of this task, "
                         "before running it again")
        return notes + end_earlier_attempt(path, self._grace)

    def _ensure_image(self, client: Any, settings: ContainerSettings) -> None:
        """Apply the pull policy; RuntimeUnavailable names the image and the reason."""
        image = settings.image
        if settings.pull != PullPolicy.ALWAYS:
            if self._has_image(client, image):
                return
            if settings.pull == PullPolicy.NEVER:
                raise RuntimeUnavailable(f"image {image} is not present on the {self.name} "
                                         "engine and the pull policy is 'never'")
        repo, tag = _split_image(image)
        try:
            client.api.pull(repo, tag=tag)
        except Exception as exc:
            raise RuntimeUnavailable(f"image {image} is not present and cannot be pulled: "
                                     f"{one_line(exc)}") from exc
        if not self._has_image(client, image):
            raise RuntimeUnavailable(f"image {image} is still missing after a pull")

    @staticmethod
    def _has_image(client: Any, image: str) -> bool:
        try:
            client.api.inspect_image(image)
        except Exception as exc:
            if getattr(getattr(exc, "response", None), "status_code", None) == 404:
                return False
            raise RuntimeUnavailable(f"cannot inspect image {image}: {one_line(exc)}") from exc
        return True

    def reap(self, active_run_ids: set[str]) -> int:
        """Remove this runner's containers whose run is not active (left by a crash)."""
        api = self.client().api
        removed = 0
        for item in api.containers(all=True, filters={"label": f"{LABEL_RUNNER}="
                                                                f"{self._runner_id}"}):
            labels = item.get("Labels") or {}
            if labels.get(LABEL_RUN) in active_run_ids:
                continue
            try:
                api.remove_container(item["Id"], force=True, v=True)
                removed += 1
            except Exception as exc:
                if getattr(getattr(exc, "response", None), "status_code", None) != 404:
                    raise RuntimeUnavailable(f"cannot remove leftover container "
                                             f"{item['Id'][:12]}: {one_line(exc)}") from exc
        return removed
