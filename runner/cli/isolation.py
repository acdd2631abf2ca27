"""What keeps steps away from the runner's credentials, wired by `ferry run` and the daemon:
the allowed environment, the tokens masked in all output, the step user's directories, and a
process that same-uid steps cannot read (`/proc/<pid>/environ`, memory)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Mapping
from pathlib import Path

from runner.config import FerryConfig
from runner.runtimes.stepenv import StepUser, step_environment

_PR_SET_DUMPABLE = 4
TOKEN_VARIABLES = ("FERRY_TOKEN", "FERRY_RUNNER_TOKEN", "FERRY_SERVER_ADMIN_TOKEN",
                   "FERRY_SERVER_REGISTRATION_TOKEN")
"""Variables that hold control-plane tokens: their values are masked in step output."""


def known_tokens(config: FerryConfig, environ: Mapping[str, str]) -> list[str]:
    """Every token this process knows (config and environment): never shown to a step."""
    found = [environ.get(name, "") for name in TOKEN_VARIABLES]
    found.append(config.runner.token or "")
    if config.state_management.api_config is not None:
        found.append(config.state_management.api_config.auth_token)
    return [t for t in found if t and len(t) >= 4]


def step_env(config: FerryConfig, environ: Mapping[str, str],
             user: StepUser | None = None) -> dict[str, str]:
    """The part of this process's environment steps see (and `${{ env.X }}` reads)."""
    return step_environment(environ, config.runner.step_env_allow, user=user,
                            hidden_values=known_tokens(config, environ))


def step_user(config: FerryConfig) -> StepUser | None:
    """`runner.step_user` when this process runs as root (else steps share our uid anyway)."""
    name = config.runner.step_user
    if not name or os.geteuid() != 0:
        return None
    return StepUser.lookup(name)


def undumpable() -> bool:
    """Make /proc/<our pid>/environ, mem and fds unreadable by processes of our own uid (host
    steps): PR_SET_DUMPABLE 0, as ssh-agent does. Our children get it back at exec."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(name, use_errno=True)
        return int(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    return False


def open_for_step_user(data_dir: Path, work_dir: Path) -> None:
    """A root daemon with a step user: let that user traverse (not list) the directories down
    to the work dir; every other file of the data dir stays private (umask 077)."""
    os.umask(0o077)
    for path in (data_dir, work_dir):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o711)
