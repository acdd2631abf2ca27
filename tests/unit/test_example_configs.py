"""The example config files under examples/config/ load without an error and mean what their
comments say (the server's example: tests/integration/server/test_server_operations.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config import load_config
from runner.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "config"
ENV = {"FERRY_RUNNER_TOKEN": "fr_example-token-0123456789"}


def test_runner_example_is_a_valid_runner_config() -> None:
    cfg = load_config(EXAMPLES / "runner.yaml", environ=ENV)
    runner = cfg.runner
    assert runner.token == ENV["FERRY_RUNNER_TOKEN"] and runner.server and runner.runner_id
    assert runner.concurrency == 2 and runner.labels == ["linux", "docker"]
    assert runner.containers.pull == "if-not-present" and runner.containers.memory == "2g"
    assert runner.retention is not None
    assert runner.retention.older_than == 30 * 86400 and runner.retention.keep == 20
    assert runner.retention.interval == 3600


def test_report_example_is_a_valid_api_config() -> None:
    cfg = load_config(EXAMPLES / "report.yaml", environ=ENV)
    api = cfg.state_management.api_config
    assert cfg.state_management.backend == "api" and api is not None
    assert api.auth_token == ENV["FERRY_RUNNER_TOKEN"]
    with pytest.raises(ConfigError, match="FERRY_RUNNER_TOKEN is not set"):
        load_config(EXAMPLES / "report.yaml", environ={})


@pytest.mark.parametrize("retention, words", [
    ("{}", ["runner.retention", "give older_than"]),
    ("{older_than: soon}", ["older_than", "'soon' is not an age"]),
    ("{keep: -1}", ["keep"]),
    ("{older_than: 30d, every: 1h}", ["every", "unknown key"]),
])
def test_bad_retention_settings_name_the_key(tmp_path: Path, retention: str,
                                             words: list[str]) -> None:
    path = tmp_path / "runner.yaml"
    path.write_text(f"runner:\n  retention: {retention}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    for word in words:
        assert word in str(err.value), str(err.value)
    assert str(err.value).startswith(f"{path}:2: ")
