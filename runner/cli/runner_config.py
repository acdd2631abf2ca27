"""The runner config of `ferry register` and `ferry daemon` (the `runner:` section), read once
into typed settings; the container policy is shared with `ferry run -c`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import ConfigError

if TYPE_CHECKING:
    from runner.config import ContainerDefaults, RetentionSection, RunnerSection
    from runner.runtimes.options import ContainerPolicy


@dataclass(frozen=True)
class RunnerConfig:
    """The daemon's settings, from the config file's `runner:` section (parsed once)."""

    source: Path
    server: str
    token: str
    runner_id: str
    labels: tuple[str, ...]
    concurrency: int
    heartbeat_interval: float
    claim_wait: float
    container_policy: ContainerPolicy
    podman_socket: str | None = None
    retention: RetentionSection | None = None
    codemod: str | None = None
    """`runner.tools.codemod`: the Codemod CLI (else FERRY_CODEMOD_BIN, PATH)."""
    max_parallel: int = field(default_factory=lambda: os.cpu_count() or 1)
    grace_seconds: float = 5.0
    log_level: str = "info"
    step_env_allow: tuple[str, ...] | None = None
    step_user: str | None = None
    process_tracking: str = "auto"
    drain_timeout: float = 60.0

    @classmethod
    def from_section(cls, section: RunnerSection, source: Path) -> RunnerConfig:
        """Check the fields `ferry register` writes and convert the rest."""
        if not section.server or not section.token or not section.runner_id:
            raise ConfigError(f"{source}: runner.server, runner.token and runner.runner_id are "
                              "required (run 'ferry register')")
        return cls(source=source, server=section.server, token=section.token,
                   runner_id=section.runner_id, labels=tuple(section.labels),
                   concurrency=section.concurrency,
                   heartbeat_interval=section.heartbeat_interval, claim_wait=section.poll_wait,
                  container_policy=container_policy(section.containers),
                   podman_socket=section.containers.podman_socket,
                   retention=section.retention,
                   step_env_allow=(tuple(section.step_env_allow)
                                   if section.step_env_allow is not None else None),
                   step_user=section.step_user, process_tracking=section.process_tracking,
                   codemod=section.tools.codemod, drain_timeout=section.drain_timeout)


def container_policy(containers: ContainerDefaults) -> ContainerPolicy:
    """The runtimes' container policy from a config's `runner.containers` (the daemon's and
    `ferry run -c`'s)."""
    from runner.runtimes.options import ContainerPolicy
    from runner.workflow.model import PullPolicy

    return ContainerPolicy(network=containers.network, memory=containers.memory,
                           cpus=containers.cpus, pids=containers.pids,
                           pull=PullPolicy(containers.pull),
                           allow_privileged=containers.allow_privileged,
                           allow_mounts=containers.allow_mounts)


def save_config(path: Path, **runner: object) -> None:
    """Write the runner config (mode 0600)."""
    from runner.config import save_runner_config

    save_runner_config(path, runner)


def read_config(path: Path) -> RunnerConfig:
    """The runner config at `path`; ConfigError when there is none or it lacks a field."""
    from runner.config import load_config

    if not path.exists():
        raise ConfigError(f"no runner config at {path}: run 'ferry register --server URL "
                          "--token TOKEN' first (or pass -c CONFIG)")
    return RunnerConfig.from_section(load_config(path, environ=os.environ).runner, path)
