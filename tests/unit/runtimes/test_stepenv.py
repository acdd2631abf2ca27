"""What a step inherits from the runner's environment: the allow-list, never Ferry's settings
or a token, the step user's identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import ConfigError
from runner.runtimes.stepenv import DEFAULT_ALLOW, StepUser, step_environment

RUNNER_ENV = {
    "PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
    "TZ": "UTC", "https_proxy": "http://proxy:3128", "TMPDIR": "/tmp",
    "FERRY_HOME": "/var/lib/ferry", "FERRY_TOKEN": "ft_runner_token_value",
    "FERRY_SERVER_ADMIN_TOKEN": "fa_admin_token_value", "NOTIFY_SOCKET": "/run/systemd/notify",
    "AWS_SECRET_ACCESS_KEY": "aws-secret", "CUSTOM_BUILD_FLAG": "1",
    "INNOCENT_NAME": "ft_runner_token_value",
}


@pytest.mark.parametrize(("allow", "expected"), [
    (None, {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "https_proxy", "TMPDIR"}),
    (["PATH", "CUSTOM_*", "FERRY_*", "NOTIFY_SOCKET", "INNOCENT_NAME"],
     {"PATH", "CUSTOM_BUILD_FLAG"}),
    ([], set()),
])
def test_only_allowed_variables_pass_and_never_ferry_settings_or_tokens(
        allow: list[str] | None, expected: set[str]) -> None:
    env = step_environment(RUNNER_ENV, allow, hidden_values=["ft_runner_token_value"])
    print(f"\nallow={allow} -> {sorted(env)}")
    assert set(env) == expected
    assert "ft_runner_token_value" not in env.values()


def test_the_default_list_is_documented_in_the_readme() -> None:
    text = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    missing = [name for name in DEFAULT_ALLOW if f"`{name}`" not in text]
    assert not missing, missing


def test_a_step_user_replaces_home_user_and_logname() -> None:
    user = StepUser(name="ferry-step", uid=999, gid=999, groups=(), home="/var/lib/ferry-step")
    env = step_environment({"HOME": "/root", "USER": "root", "PATH": "/bin"}, None, user=user)
    assert env == {"HOME": "/var/lib/ferry-step", "USER": "ferry-step",
                   "LOGNAME": "ferry-step", "PATH": "/bin"}


def test_an_unknown_or_root_step_user_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no user 'no-such-user-x'"):
        StepUser.lookup("no-such-user-x")
    with pytest.raises(ConfigError, match="root"):
        StepUser.lookup("root")
