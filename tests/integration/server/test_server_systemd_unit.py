"""systemd/ferry-server.service: `systemd-analyze verify` accepts it, it is hardened exactly like
the runner's unit, and its ExecStart is a command line `ferry-server` accepts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import IN_CI

ROOT = Path(__file__).resolve().parents[3]
UNIT = ROOT / "systemd" / "ferry-server.service"
RUNNER_UNIT = ROOT / "systemd" / "ferry-runner.service"
HARDENING = ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
             "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
             "ProtectClock", "ProtectHostname", "RestrictSUIDSGID",
             "RestrictRealtime", "LockPersonality", "RestrictAddressFamilies",
             "SystemCallArchitectures", "AmbientCapabilities", "UMask")
# CapabilityBoundingSet differs on purpose: the server needs none; the runner runs as root with
# the few it needs to run host steps as its step user (test_daemon_systemd_unit checks them).
# ProtectControlGroups too: the runner's cgroup is delegated to it (Delegate=yes) to give each
# host task a cgroup of its own; the server's stays read-only (checked below).


def _directives(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _verify(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    binary = tmp_path / "ferry-server"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    unit = tmp_path / "ferry-server.service"
    unit.write_text(text.replace("/usr/local/bin/ferry-server", str(binary)))
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60)


def _need_analyze() -> None:
    if shutil.which("systemd-analyze") is None:
        if IN_CI:
            pytest.fail("systemd-analyze is missing; CI must have it")
        pytest.skip("systemd-analyze is not installed")


def test_systemd_analyze_verify_accepts_the_server_unit(tmp_path: Path) -> None:
    _need_analyze()
    result = _verify(UNIT.read_text(), tmp_path)
    complaints = [ln for ln in result.stderr.splitlines() if "ferry-server.service" in ln]
    assert result.returncode == 0, result.stderr
    assert complaints == [], complaints
    broken = _verify(UNIT.read_text().replace("Type=exec", "Type=exce"), tmp_path)
    assert [ln for ln in broken.stderr.splitlines() if "ferry-server.service" in ln], \
        "verify no longer catches a typo: the test above proves nothing"


def test_server_unit_is_hardened_like_the_runner_unit() -> None:
    server, runner = _directives(UNIT), _directives(RUNNER_UNIT)
    rows = [(key, server.get(key), runner.get(key)) for key in HARDENING]
    print("\n".join(f"{k:26} server={s} runner={r}" for k, s, r in rows))
    assert all(s == r and s for _, s, r in rows), rows
    assert server["CapabilityBoundingSet"] == [""]
    assert server["ProtectControlGroups"] == ["yes"] and "Delegate" not in server
    assert runner["ProtectControlGroups"] == ["no"] and runner["Delegate"] == ["yes"]
    assert server["User"] == ["ferry-server"] and server["StateDirectory"] == ["ferry-server"]
    assert server["RestartPreventExitStatus"] == ["2"]


def test_exec_start_is_a_command_line_ferry_server_accepts(tmp_path: Path) -> None:
    from server_stub.cli import parse

    argv = _directives(UNIT)["ExecStart"][0].split()[1:]
    config = ROOT / "examples" / "config" / "server.yaml"
    args = parse([config.as_posix() if a == "/etc/ferry/server.yaml" else a for a in argv])
    assert args.data_dir == Path("/var/lib/ferry-server") and args.repos == Path("/srv/git")
