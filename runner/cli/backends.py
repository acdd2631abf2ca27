"""The state backend a command uses (from `-c CONFIG`, local SQLite by default) and the
resolution of the ids a user types (run id prefixes, task ids, prefixes or node ids)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.config import FerryConfig, load_config
from runner.errors import ConfigError, UsageError
from runner.paths import Paths
from runner.state.backend import StateBackend


def read_config(path: str | None, environ: Mapping[str, str]) -> FerryConfig:
    """The typed config of `-c PATH` (defaults without one); `ConfigError` naming the file."""
    if not path:
        return FerryConfig()
    return load_config(Path(path), environ=environ)


def build_backend(config: FerryConfig, paths: Paths, source: str = "config") -> StateBackend:
    """The state backend the config asks for: local SQLite, journal-first to a control plane
    (`backend: api`, mirrored to local SQLite so status and logs work offline), or PostgreSQL
    shared with other processes (`backend: database`)."""
    from runner.state.local import LocalBackend

    sm = config.state_management
    paths.ensure()
    if sm.backend == "local":
        return LocalBackend(paths.db_path, paths.logs_dir)
    if sm.backend == "api":
        from runner.api.client import ControlClient
        from runner.api.retry import RetryPolicy
        from runner.state.reporting import ReportingBackend

        api = sm.api_config
        if api is None:
            raise ConfigError(f"{source}: stateManagement.apiConfig is required with backend "
                              "'api'")
        _check_endpoint(api.endpoint, source)
        retry = sm.retry_config
        policy = RetryPolicy.from_config(retry.max_retries, retry.backoff_factor)
        mirror = LocalBackend(paths.db_path, paths.logs_dir)
        return ReportingBackend(ControlClient(api.endpoint, api.auth_token, timeout=10),
                                paths.journal_dir,
                                paths.logs_dir, mirror=mirror, policy=policy)
    if sm.backend == "database":
        from runner.state.database import DatabaseBackend

        if sm.database_config is None:
            raise ConfigError(f"{source}: stateManagement.databaseConfig is required with "
                              "backend 'database'")
        return DatabaseBackend(sm.database_config.url)
    raise ConfigError(f"{source}: stateManagement.backend '{sm.backend}' is not supported "
                      "(use 'local', 'api' or 'database')")


def _check_endpoint(endpoint: str, source: str) -> None:
    """An http(s) URL with a host; a path is allowed (a proxy may serve the API under it)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"{source}: stateManagement.apiConfig.endpoint '{endpoint}' is not an "
                          "http(s) URL of a control plane, e.g. http://ctl.example:8750")


def open_backend(args: argparse.Namespace) -> tuple[StateBackend, Paths]:
    """Paths from the environment and the backend from `-c` (local by default)."""
    paths = Paths.from_env(os.environ)
    config_path = getattr(args, "config", None)
    config = read_config(config_path, os.environ)
    return build_backend(config, paths, config_path or "config"), paths


def resolve_task(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    """A task by full id, unique id prefix (>= 4 chars) or node id (when the node has one
    task); `UsageError` naming the run otherwise."""
    tasks: dict[str, dict[str, Any]] = doc.get("tasks") or {}
    if ref in tasks:
        return tasks[ref]
    matches = [t for t in tasks.values() if len(ref) >= 4 and t["id"].startswith(ref)]
    if not matches:
        matches = [t for t in tasks.values() if t["node_id"] == ref and not t.get("master")]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UsageError(f"task '{ref}' is ambiguous in run {doc['id']} "
                         f"({len(matches)} tasks match); give the task id")
    short = (" (a task id prefix needs at least 4 characters)"
             if len(ref) < 4 and not any(t["node_id"] == ref for t in tasks.values()) else "")
    raise UsageError(f"unknown task '{ref}' in run {doc['id']}{short}")


def codemod_binary(workflow: dict[str, Any], config: FerryConfig,
                   env: Mapping[str, str]) -> Path | None:
    """The Codemod CLI for a run of `workflow` (FERRY_CODEMOD_BIN, `runner.tools.codemod`,
    PATH): None when the workflow has no codemod step or none is installed (its codemod steps
    then fail saying how to install it). A named one that is not executable: ConfigError."""
    from runner.codemod_cli import find_codemod
    from runner.workflow.validate_codemod import needs_codemod

    if not needs_codemod(workflow):
        return None
    found = find_codemod(env, config.runner.tools.codemod)
    return found.path if found is not None else None
