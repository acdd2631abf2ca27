"""The systemd unit: `systemd-analyze verify` accepts it, and it says what the daemon needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import IN_CI

UNIT = Path(__file__).resolve().parents[3] / "systemd" / "ferry-runner.service"


def _directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    binary = tmp_path / "ferry"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    unit = tmp_path / "ferry-runner.service"
    unit.write_text(unit_text.replace("/usr/local/bin/ferry", str(binary)))
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60)


def _need_analyze() -> None:
    if shutil.which("systemd-analyze") is None:
        if IN_CI:
            pytest.fail("systemd-analyze is missing; CI must have it")
        pytest.skip("systemd-analyze is not installed")


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    _need_analyze()
    result = _verify(UNIT.read_text(), tmp_path)
    complaints = [line for line in result.stderr.splitlines() if "ferry-runner.service" in line]
    assert result.returncode == 0, result.stderr
    assert complaints == [], complaints


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """Guards the test above: a typo in the unit must show up as a complaint."""
    _need_analyze()
    broken = UNIT.read_text().replace("Type=notify", "Type=notfy\nBogusKey=1")
    result = _verify(broken, tmp_path)
    complaints = [line for line in result.stderr.splitlines() if "ferry-runner.service" in line]
    assert len(complaints) == 2


def test_unit_has_the_service_contract() -> None:
    d = _directives()
    expected = {"Type": "notify", "NotifyAccess": "main", "KillMode": "mixed",
                "Restart": "on-failure", "StateDirectoryMode": "0711",
                "ConfigurationDirectoryMode": "0700", "NoNewPrivileges": "yes",
                "ProtectSystem": "strict", "ProtectHome": "yes",
                "PrivateTmp": "yes", "ExecReload": "/bin/kill -HUP $MAINPID",
                "StateDirectory": "ferry", "ConfigurationDirectory": "ferry",
                "CacheDirectory": "ferry", "Delegate": "yes", "ProtectControlGroups": "no"}
    for key, value in expected.items():
        assert d.get(key) == [value], key
    assert d["ExecStart"][0].split()[1] == "daemon"
    # root, so that host steps run as the step user; only the capabilities that takes
    assert "User" not in d
    assert set(d["CapabilityBoundingSet"][0].split()) == {
        "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL",
        "CAP_SYS_PTRACE"}
    assert "step_user" in UNIT.read_text() and "ferry-step" in UNIT.read_text()
    assert int(d["WatchdogSec"][0]) >= 60  # the claim long-poll holds the loop up to 30 s
    assert d["TimeoutStopSec"][0].endswith("min")
    assert "AF_UNIX" in d["RestrictAddressFamilies"][0]  # Docker socket and sd_notify
    env = " ".join(d["Environment"])
    assert "XDG_CONFIG_HOME=/etc" in env and "XDG_DATA_HOME=/var/lib" in env
