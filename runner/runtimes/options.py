"""Container policy (runner config) and how a node's `runtime:` options are checked against it."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from runner.errors import RuntimeRefused
from runner.runtimes.container_options import ContainerOptions, parse_options
from runner.workflow.model import PullPolicy
from runner.workflow.model import Runtime as RuntimeOptions

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)i?b?\s*$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_memory(value: str | int, where: str = "runtime.memory") -> int:
    """Bytes in `512m`, `1g`, `1.5GiB`, `268435456`; RuntimeRefused on anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise RuntimeRefused(f"{where}: memory must be greater than zero")
        return value
    match = _MEMORY.match(str(value))
    if not match:
        raise RuntimeRefused(f"{where}: '{value}' is not a memory size (use e.g. 512m, 2g)")
    size = int(float(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()])
    if size <= 0:
        raise RuntimeRefused(f"{where}: memory must be greater than zero")
    return size


@dataclass(frozen=True)
class Mount:
    """A host directory bind-mounted into the container."""

    source: str
    target: str
    read_only: bool = False


def parse_mount(text: str) -> Mount:
    """`host:container[:ro|rw]` with absolute paths; RuntimeRefused otherwise."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]) or (len(parts) == 3 and
                                                          parts[2] not in ("ro", "rw")):
        raise RuntimeRefused(f"runtime.mounts: '{text}' is not host:container[:ro]")
    if not (parts[0].startswith("/") and parts[1].startswith("/")):
        raise RuntimeRefused(f"runtime.mounts: '{text}': both paths must be absolute")
    return Mount(parts[0], parts[1], len(parts) == 3 and parts[2] == "ro")


@dataclass(frozen=True)
class ContainerSettings:
    """Everything needed to create one task's container, after the policy was applied."""

    image: str
    pull: PullPolicy
    network: str | None
    memory: int | None
    nano_cpus: int | None
    pids: int | None
    user: str | None
    """None: run as the host user running Ferry (files in the workspace stay the user's)."""
    privileged: bool
    mounts: tuple[Mount, ...]
    working_dir: str | None = None
    """The steps' directory in the container (None: the workspace mount)."""
    extra: ContainerOptions = field(default_factory=ContainerOptions)
    """What `runtime.options` added (the allow-listed `docker run` options)."""


@dataclass(frozen=True)
class ContainerPolicy:
    """Runner-side defaults and limits for container tasks (from the runner config)."""

    default_image: str | None = None
    network: str | None = None
    memory: str | int | None = None
    cpus: float | None = None
    pids: int | None = None
    pull: PullPolicy = PullPolicy.IF_NOT_PRESENT
    allow_privileged: bool = False
    allow_mounts: bool = False
    allowed_images: tuple[str, ...] | None = None
    """Glob patterns (`ferry-test/*`, `python:3.*`); None allows every image."""
    allowed_networks: tuple[str, ...] | None = field(default=None)
    """Networks a workflow may ask for; None allows every network."""

    def resolve(self, options: RuntimeOptions, where: str = "runtime") -> ContainerSettings:
        """Merge a node's runtime options over these defaults; RuntimeRefused if not allowed."""
        image = options.image or self.default_image
        if not image:
            raise RuntimeRefused(f"{where}.image: a {options.type} task needs an image "
                                 "(set runtime.image or the runner's default image)")
        if self.allowed_images is not None and not any(
                fnmatch.fnmatchcase(image, pattern) for pattern in self.allowed_images):
            raise RuntimeRefused(f"{where}.image: image '{image}' is not allowed by the runner "
                                 f"config (allowed: {', '.join(self.allowed_images) or 'none'})")
        extra = parse_options(options.options, allow_privileged=self.allow_privileged,
                              allow_mounts=self.allow_mounts, where=f"{where}.options")
        if options.privileged and not self.allow_privileged:
            raise RuntimeRefused(f"{where}.privileged: privileged containers are refused by the "
                                 "runner config (allow_privileged is false)")
        if options.mounts and not self.allow_mounts:
            raise RuntimeRefused(f"{where}.mounts: extra host mounts are refused by the runner "
                                 "config (allow_mounts is false)")
        network = options.network or extra.network or self.network
        if (options.network and self.allowed_networks is not None
                and options.network not in self.allowed_networks):
            raise RuntimeRefused(f"{where}.network: network '{options.network}' is not allowed "
                                 "by the runner config")
        memory = next((m for m in (options.memory, extra.memory, self.memory) if m is not None),
                      None)
        cpus = next((c for c in (options.cpus, extra.cpus, self.cpus) if c is not None), None)
        if cpus is not None and cpus <= 0:
            raise RuntimeRefused(f"{where}.cpus: must be greater than zero")
        pids = next((p for p in (options.pids, extra.pids, self.pids) if p is not None), None)
        if pids is not None and pids <= 0:
            raise RuntimeRefused(f"{where}.pids: must be greater than zero")
        return ContainerSettings(
            image=image,
            pull=options.pull or self.pull,
            network=network,
            memory=parse_memory(memory, f"{where}.memory") if memory is not None else None,
            nano_cpus=int(cpus * 1e9) if cpus is not None else None,
            pids=pids,
            user=options.user or extra.user,
            privileged=options.privileged or extra.privileged,
            mounts=tuple(parse_mount(text) for text in [*options.mounts, *extra.binds]),
            working_dir=container_workdir(options.working_dir or extra.workdir),
            extra=extra,
        )


def container_workdir(working_dir: str | None) -> str | None:
    """`runtime.working_dir` in a container: absolute as given, relative under the workspace
    mount (None: the workspace mount itself)."""
    if not working_dir:
        return None
    if working_dir.startswith("/"):
        return working_dir
    return f"/workspace/{working_dir.strip('/')}"
