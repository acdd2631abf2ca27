"""The config file: Butterflow's `stateManagement` block plus a `runner:` section.

    stateManagement:
      backend: api                       # local | api | database
      apiConfig: {endpoint: URL, authToken: "${{FERRY_TOKEN}}"}
      databaseConfig: {url: "postgresql://user@host/db"}   # backend database
      retryConfig: {maxRetries: 3, backoffFactor: 1.5}
    runner:
      server: URL, token: T, runner_id: ID, name: N, labels: [a, b], concurrency: 2,
      work_dir: PATH, poll_wait: 10, heartbeat_interval: 1, process_tracking: auto,
      drain_timeout: 60,
      step_env_allow: [PATH, HOME, LC_*, ...], step_user: ferry-step,
      containers: {allow_privileged, allow_mounts, pull, network, memory, cpus, pids,
                   podman_socket},
      retention: {older_than: 30d, keep: 10, interval: 1h},
      tools: {codemod: PATH}             # the Codemod CLI (else FERRY_CODEMOD_BIN, PATH)

`${{NAME}}` in a string is taken from the environment mapping passed in (the CLI passes
os.environ). Precedence is flags > env (`FERRY_*`) > file > defaults: the CLI collects flags and
env into overrides and calls `merge`. Unknown keys and bad values are `ConfigError`s naming the
file, the key and its line.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runner.ages import parse_age
from runner.errors import ConfigError

_ENV_REF = re.compile(r"\$\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ApiConfig(_Strict):
    """Where the `api` backend reports runs."""

    endpoint: str = Field(min_length=1)
    auth_token: str = Field(alias="authToken", min_length=1)


class DatabaseConfig(_Strict):
    """Where the `database` backend keeps run state (PostgreSQL)."""

    url: str = Field(min_length=1, pattern=r"^postgres(ql)?://")


class RetryConfig(_Strict):
    """Butterflow's retry settings for control-plane calls."""

    max_retries: int = Field(default=3, alias="maxRetries", ge=0, le=100)
    backoff_factor: float = Field(default=1.5, alias="backoffFactor", ge=1.0, le=10.0)


class StateManagement(_Strict):
    """Which backend keeps run state."""

    backend: Literal["local", "api", "database"] = "local"
    api_config: ApiConfig | None = Field(default=None, alias="apiConfig")
    database_config: DatabaseConfig | None = Field(default=None, alias="databaseConfig")
    retry_config: RetryConfig = Field(default_factory=RetryConfig, alias="retryConfig")


class ContainerDefaults(_Strict):
    """Container policy of this runner."""

    allow_privileged: bool = False
    allow_mounts: bool = False
    pull: Literal["if-not-present", "always", "never"] = "if-not-present"
    network: str | None = None
    memory: str | None = None
    cpus: float | None = Field(default=None, gt=0)
    pids: int | None = Field(default=None, gt=0)
    podman_socket: str | None = None
    """Podman's API socket (a path or `unix://` URL); default: `$XDG_RUNTIME_DIR/podman/
    podman.sock`, then `/run/podman/podman.sock`."""


class RetentionSection(_Strict):
    """What the daemon removes by itself (`ferry prune --older-than ... --keep ...`)."""

    older_than: float | None = None
    """Seconds (written `30d`, `12h`, `2w`); None: no age limit, only `keep` applies."""
    keep: int = Field(default=0, ge=0)
    interval: float = Field(default=3600.0, gt=0)
    """Seconds between passes (written `1h`, `30m`)."""

    @field_validator("older_than", "interval", mode="before")
    @classmethod
    def _age(cls, value: object) -> object:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str | int | float):
            try:
                return parse_age(value)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _something(self) -> RetentionSection:
        if self.older_than is None and not self.keep:
            raise ValueError("give older_than (e.g. 30d), keep (a number of runs) or both")
        return self


class ToolsSection(_Strict):
    """External tools the runner uses."""

    codemod: str | None = None
    """Path of the Codemod CLI (upstream Butterflow's engine); else FERRY_CODEMOD_BIN or PATH."""


class RunnerSection(_Strict):
    """The daemon's settings."""

    server: str | None = None
    token: str | None = None
    runner_id: str | None = None
    name: str | None = None
    labels: list[str] = Field(default_factory=list)
    concurrency: int = Field(default=1, ge=1, le=256)
    work_dir: str | None = None
    # a claim held 10 s bounds how long an idle drain takes; a heartbeat a second bounds how fast
    # a cancel on the server stops the run's tasks (issue: within 2 s)
    poll_wait: float = Field(default=10.0, ge=0, le=30)
    heartbeat_interval: float = Field(default=1.0, gt=0)
    step_env_allow: list[str] | None = None
    """The runner's environment variables steps see (names or `PREFIX*`); None: the default
    list (`runner.runtimes.stepenv.DEFAULT_ALLOW`). FERRY_* never passes."""
    step_user: str | None = None
    """A root daemon runs host steps as this unprivileged user."""
    # once the daemon stops (SIGTERM, --once), seconds finished runs' records may take to reach
    # the server; well under the systemd unit's TimeoutStopSec
    drain_timeout: float = Field(default=60.0, ge=0, le=3600)
    containers: ContainerDefaults = Field(default_factory=ContainerDefaults)
    tools: ToolsSection = Field(default_factory=ToolsSection)
    retention: RetentionSection | None = None
    """When set, the daemon prunes finished runs' files by itself."""
    process_tracking: Literal["auto", "cgroup", "session"] = "auto"
    """How host steps' processes are tracked (runner.runtimes.tracking): a cgroup per task where
    possible, always (else host tasks fail), or never."""


class FerryConfig(_Strict):
    """The whole config file."""

    state_management: StateManagement = Field(default_factory=StateManagement,
                                              alias="stateManagement")
    runner: RunnerSection = Field(default_factory=RunnerSection)


def expand_env(value: Any, environ: Mapping[str, str], where: str = "") -> Any:
    """Replace `${{NAME}}` in strings (recursively) from `environ`; a missing name is an error."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in environ:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            return environ[name]
        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v, environ, f"{where}.{k}" if where else str(k))
                for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, environ, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `override` onto `base` (None in `override` means: not given)."""
    out = dict(base)
    for key, value in override.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_config(data: Mapping[str, Any], source: str, *, environ: Mapping[str, str],
                 lines: Mapping[tuple[str, ...], int] | None = None) -> FerryConfig:
    """Validate a config mapping (env references expanded)."""
    expanded = expand_env(dict(data), environ)
    try:
        config = FerryConfig.model_validate(expanded)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(str(p) for p in err.get("loc", ()))
        line = (lines or {}).get(loc) or (lines or {}).get(loc[:-1])
        at = f":{line}" if line else ""
        what = "unknown key" if err.get("type") == "extra_forbidden" else err.get("msg")
        raise ConfigError(f"{source}{at}: {'.'.join(loc)}: {what}") from exc
    sm = config.state_management
    if sm.backend == "database" and sm.database_config is None:
        raise ConfigError(f"{source}: stateManagement.databaseConfig is required with backend "
                          "'database' (databaseConfig: {url: postgresql://...})")
    if sm.backend == "api" and sm.api_config is None:
        raise ConfigError(f"{source}: stateManagement.apiConfig is required with backend 'api'")
    return config


def load_config(path: Path, *, environ: Mapping[str, str],
                overrides: Mapping[str, Any] | None = None) -> FerryConfig:
    """Read, merge (overrides win) and validate a config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config file must be a mapping")
    lines: dict[tuple[str, ...], int] = {}
    _index_lines(node, (), lines)
    return parse_config(merge(data, overrides or {}), str(path), environ=environ, lines=lines)


def _yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    at = f":{mark.line + 1}" if mark is not None else ""
    return ConfigError(f"{path}{at}: not valid YAML: {getattr(exc, 'problem', exc)}")


def _index_lines(node: Any, prefix: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, str(key.value))
            out[path] = key.start_mark.line + 1
            _index_lines(value, path, out)


def save_runner_config(path: Path, runner: Mapping[str, Any]) -> None:
    """Write `runner:` settings (merged into the existing file) atomically with mode 0600."""
    existing: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
        except yaml.YAMLError as exc:  # registering must not silently drop a broken file
            raise _yaml_error(path, exc) from exc
        if isinstance(loaded, dict):
            existing = loaded
    data = merge(existing, {"runner": dict(runner)})
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".runner-", suffix=".yaml", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(data, fh, sort_keys=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
