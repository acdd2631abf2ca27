"""What a host step inherits from the runner: an allow-list of its environment, and its user.

A step's environment is built, not inherited: only the variables `allowed` names (exact names
or `PREFIX*` patterns, `runner.step_env_allow` in the config; `DEFAULT_ALLOW` otherwise) pass,
never one of `NEVER_PASSED` (Ferry's own settings and tokens, systemd's sockets) nor any
variable holding a token value the caller names. `${{ env.X }}` reads this same mapping.

When the runner runs as root with `runner.step_user`, host steps run as that user: `StepUser`
carries its ids, groups and home, and its HOME/USER/LOGNAME replace the runner's.
"""

from __future__ import annotations

import fnmatch
import os
import pwd
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from runner.errors import ConfigError

DEFAULT_ALLOW: tuple[str, ...] = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_*", "TZ", "TERM",
    "TMPDIR", "TMP", "TEMP",
    "http_proxy", "https_proxy", "no_proxy", "ftp_proxy", "all_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "FTP_PROXY", "ALL_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR",
)
"""The runner's variables a step sees unless the config says otherwise."""

NEVER_PASSED: tuple[str, ...] = (
    "FERRY_*", "NOTIFY_SOCKET", "WATCHDOG_*", "LISTEN_*", "CREDENTIALS_DIRECTORY",
    "INVOCATION_ID", "JOURNAL_STREAM",
)
"""Refused even when allowed: Ferry's settings (FERRY_HOME, FERRY_TOKEN, FERRY_SERVER_ADMIN_TOKEN,
...), and the sockets and credentials systemd hands the runner."""


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(name == p or (p.endswith("*") and fnmatch.fnmatchcase(name, p))
               for p in patterns)


@dataclass(frozen=True)
class StepUser:
    """The unprivileged user host steps run as (the runner itself runs as root)."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    @classmethod
    def lookup(cls, name: str) -> StepUser:
        """The user `name` from the password database; ConfigError if there is none."""
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ConfigError(f"runner.step_user: no user '{name}' on this machine (create it "
                              "as the README's install steps show)") from None
        if entry.pw_uid == 0:
            raise ConfigError(f"runner.step_user: '{name}' is root; steps must run unprivileged")
        groups = tuple(g for g in os.getgrouplist(name, entry.pw_gid) if g != entry.pw_gid)
        return cls(name=name, uid=entry.pw_uid, gid=entry.pw_gid, groups=groups,
                   home=entry.pw_dir)

    @property
    def owner(self) -> str:
        """`uid:gid`, as a container's user."""
        return f"{self.uid}:{self.gid}"


def step_environment(environ: Mapping[str, str], allowed: Iterable[str] | None = None, *,
                     user: StepUser | None = None,
                     hidden_values: Iterable[str] = ()) -> dict[str, str]:
    """The runner's variables a step may see: allowed, not refused, not holding a token."""
    allow = tuple(allowed) if allowed is not None else DEFAULT_ALLOW
    hidden = {v for v in hidden_values if v}
    env = {k: v for k, v in environ.items()
           if _matches(k, allow) and not _matches(k, NEVER_PASSED) and v not in hidden}
    if user is not None:
        env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
    return env
