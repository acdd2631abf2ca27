"""`ferry doctor` on real parts: a registered runner against the stub over HTTP, the Docker
engine, a tmpfs filled to the last byte, and a server whose clock is off (a small HTTP server on
127.0.0.1 answering as the control plane does, with a shifted Date header)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from server_stub.testing import StubProcess
from tests.helpers import IN_CI
from tests.helpers.runfiles import daemon_run_files

ROOT = Path(__file__).resolve().parents[2]
REGISTRATION = "registration-token-doctor-tests-0123456789"


def doctor(home: Path, *args: str, env: dict[str, str] | None = None
           ) -> tuple[int, dict[str, list[dict[str, str]]], str]:
    """`ferry doctor --json`: exit code, findings by check name, stderr."""
    full = {k: v for k, v in os.environ.items() if k != "FERRY_CODEMOD_BIN"}
    full.update({"FERRY_HOME": str(home), **(env or {})})
    proc = subprocess.run([sys.executable, "-m", "runner", "doctor", "--json", *args],
                          capture_output=True, text=True, env=full, cwd=ROOT, timeout=120)
    found: dict[str, list[dict[str, str]]] = {}
    for check in json.loads(proc.stdout):
        found.setdefault(check["name"], []).append(check)
    return proc.returncode, found, proc.stderr


def status(found: dict[str, list[dict[str, str]]], name: str) -> str:
    """The worst status of a check name (FAIL > warn > skip > ok)."""
    order = ["FAIL", "warn", "skip", "ok"]
    return min((c["status"] for c in found.get(name, [])), key=order.index, default="-")


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubProcess]:
    base = tmp_path_factory.mktemp("doctor-stub")
    with StubProcess.start(base / "data", base / "repos",
                           registration_token=REGISTRATION) as stub:
        yield stub


def _registered(home: Path, url: str) -> Path:
    env = {**os.environ, "FERRY_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "runner", "register", "--server", url,
                           "--token", REGISTRATION], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return home / "config" / "runner.yaml"


def _set(config: Path, **runner: Any) -> None:
    data = yaml.safe_load(config.read_text())
    data["runner"].update(runner)
    config.write_text(yaml.safe_dump(data))


def test_doctor_matrix(stub: StubProcess, docker_image: str, tmp_path: Path) -> None:
    fake_codemod = tmp_path / "codemod"
    fake_codemod.write_text("#!/bin/sh\necho 'codemod 1.2.3'\n")
    fake_codemod.chmod(0o755)

    def closed_port() -> str:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return f"http://127.0.0.1:{s.getsockname()[1]}"

    cases: list[tuple[str, Any, list[str], dict[str, str], int, str]] = [
        # name, setup(config, home), extra args, env, exit code, {check: status} expected
        ("healthy", None, ["--image", docker_image], {"FERRY_CODEMOD_BIN": str(fake_codemod)},
         0, "config=ok server=ok clock=ok docker=ok image=ok codemod=ok disk=ok journals=ok "
            "processes=ok"),
        ("config readable by others", lambda c, h: c.chmod(0o644), [], {}, 1,
         "config=FAIL server=ok"),
        ("token refused", lambda c, h: _set(c, token="fr_not-a-token-of-this-server"), [], {},
         1, "config=ok server=FAIL"),
        ("server down", lambda c, h: _set(c, server=closed_port()), [], {}, 1,
         "server=FAIL"),
        ("no runner config", lambda c, h: c.unlink(), [], {}, 0, "config=skip server=skip"),
        ("image not pullable", None, ["--image", "localhost:1/ferry-none:0"], {}, 1,
         "image=FAIL docker=ok"),
        ("codemod set wrong", None, [], {"FERRY_CODEMOD_BIN": str(tmp_path / "nope")}, 1,
         "codemod=FAIL"),
        ("journal undelivered", lambda c, h: daemon_run_files(h, "pending", 1), [], {}, 0,
         "journals=warn"),
        ("process tracking misspelt", None, [], {"FERRY_PROCESS_TRACKING": "cgroups"}, 1,
         "processes=FAIL"),
        ("session tracking chosen", None, [], {"FERRY_PROCESS_TRACKING": "session"}, 0,
         "processes=ok"),
    ]
    rows = []
    for i, (name, setup, args, env, code, expect) in enumerate(cases):
        home = tmp_path / f"home-{i}"
        config = _registered(home, stub.url)
        if setup is not None:
            setup(config, home)
        got_code, found, stderr = doctor(home, *args, env=env)
        wanted = dict(pair.split("=") for pair in expect.split())
        # "image" stands for the "image NAME" check
        got = {check: status(found, next((n for n in found if n.startswith(check)), check))
               for check in wanted}
        rows.append((name, code, got_code, wanted, got))
        assert "Traceback" not in stderr, stderr
        token = yaml.safe_load(config.read_text())["runner"]["token"] if config.exists() \
            else None
        assert token is None or token not in json.dumps(found), "the token leaked"
    print("\n".join(f"{n:26} exit {c}/{g}  expected {w}  got {o}" for n, c, g, w, o in rows))
    for name, code, got_code, wanted, got in rows:
        assert (got_code, got) == (code, wanted), name


def test_text_output_names_the_fix(stub: StubProcess, tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = _registered(home, stub.url)
    config.chmod(0o640)
    proc = subprocess.run([sys.executable, "-m", "runner", "doctor"], capture_output=True,
                          text=True, env={**os.environ, "FERRY_HOME": str(home)}, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    failing = next(i for i, ln in enumerate(lines) if ln.startswith("FAIL  config"))
    assert "mode 0640" in lines[failing]
    assert lines[failing + 1].strip() == f"fix: chmod 600 {config}"
    assert lines[-1].startswith("1 check(s) failed")


class _SkewedServer(BaseHTTPRequestHandler):
    """Answers every request as the control plane answers an unknown repository, with its
    Date header `skew` seconds off."""

    skew = 0.0

    def date_time_string(self, timestamp: float | None = None) -> str:
        return formatdate(time.time() + self.skew, usegmt=True)

    def do_GET(self) -> None:
        body = b'{"error": "not_found", "message": "repository not found"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("skew, expected", [(0, "ok"), (-40, "warn"), (900, "FAIL")])
def test_clock_skew_against_the_server(tmp_path: Path, skew: float, expected: str) -> None:
    handler = type("Skewed", (_SkewedServer,), {"skew": skew})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        home = tmp_path / "home"
        config = home / "config" / "runner.yaml"
        config.parent.mkdir(parents=True)
        config.write_text(yaml.safe_dump({"runner": {
            "server": f"http://127.0.0.1:{server.server_address[1]}", "token": "t" * 20,
            "runner_id": "r1"}}))
        config.chmod(0o600)
        code, found, _ = doctor(home)
    finally:
        server.shutdown()
        server.server_close()
    assert status(found, "server") == "ok"
    assert status(found, "clock") == expected, found["clock"]
    detail = found["clock"][0]["detail"]
    if skew:
        side = "ahead of" if skew > 0 else "behind"
        assert f"{abs(skew)} s {side}" in detail or f"{abs(skew) - 1} s {side}" in detail \
            or f"{abs(skew) + 1} s {side}" in detail, detail
    assert code == (1 if expected == "FAIL" else 0)


def test_a_full_disk_under_ferry_home_fails(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        message = f"cannot mount a tmpfs here: {made.stderr.strip()}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        home = mount / "home"
        (home / "data").mkdir(parents=True)
        with open(mount / "filler", "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        code, found, _ = doctor(home)
        assert status(found, "disk") == "FAIL", found["disk"]
        assert "ferry prune" in found["disk"][0]["fix"]
        assert code == 1
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)
