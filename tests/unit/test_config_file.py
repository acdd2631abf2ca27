"""The config file: seed format, env references, unknown keys with lines, precedence, 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runner.config import load_config, save_runner_config
from runner.errors import ConfigError

SEED = """\
stateManagement:
  backend: "api"
  apiConfig:
    endpoint: "http://127.0.0.1:8750"
    authToken: "${{ENV_AUTH_TOKEN}}"
  retryConfig:
    maxRetries: 3
    backoffFactor: 1.5
"""


def test_seed_config_with_env_token(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(SEED)
    cfg = load_config(path, environ={"ENV_AUTH_TOKEN": "tok"})
    sm = cfg.state_management
    assert sm.backend == "api" and sm.api_config is not None
    assert sm.api_config.auth_token == "tok" and sm.retry_config.max_retries == 3


def test_missing_env_variable_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(SEED)
    with pytest.raises(ConfigError, match="ENV_AUTH_TOKEN is not set"):
        load_config(path, environ={})


def test_unknown_key_reported_with_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(SEED + "runner:\n  concurency: 2\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:10: runner\.concurency: unknown key"):
        load_config(path, environ={"ENV_AUTH_TOKEN": "t"})


def test_database_backend_needs_a_postgresql_url(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("stateManagement:\n  backend: database\n")
    with pytest.raises(ConfigError, match="databaseConfig is required"):
        load_config(path, environ={})
    path.write_text("stateManagement:\n  backend: database\n  databaseConfig: {url: x.db}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:3: stateManagement\.databaseConfig\.url"):
        load_config(path, environ={})
    path.write_text("stateManagement:\n  backend: database\n  databaseConfig:\n"
                    "    url: postgresql://ferry@${{DB_HOST}}/ferry\n")
    cfg = load_config(path, environ={"DB_HOST": "db.example"})
    assert cfg.state_management.database_config is not None
    assert cfg.state_management.database_config.url == "postgresql://ferry@db.example/ferry"


def test_overrides_win_over_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("runner:\n  concurrency: 2\n  labels: [a]\n")
    cfg = load_config(path, environ={}, overrides={"runner": {"concurrency": 4, "labels": None}})
    assert cfg.runner.concurrency == 4 and cfg.runner.labels == ["a"]


def test_bad_yaml_has_a_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("runner:\n  labels: [a\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: not valid YAML"):
        load_config(path, environ={})


def test_save_runner_config_is_0600_and_merges(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "runner.yaml"
    save_runner_config(path, {"server": "http://x", "token": "secret", "runner_id": "r1"})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    save_runner_config(path, {"labels": ["gpu"]})
    cfg = load_config(path, environ={})
    assert cfg.runner.token == "secret" and cfg.runner.labels == ["gpu"]
    assert [p.name for p in path.parent.iterdir()] == ["runner.yaml"]


def test_save_runner_config_refuses_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "runner.yaml"
    path.write_text("runner:\n  labels: [gpu\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"runner\.yaml:\d+: not valid YAML"):
        save_runner_config(path, {"server": "http://x"})
    assert path.read_text(encoding="utf-8") == "runner:\n  labels: [gpu\n"
