"""A real stub server (subprocess, 127.0.0.1) that the sync tests can stop and start again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[3]
ADMIN = "admin-token-for-sync-tests"
REGISTRATION = "registration-token-for-sync-tests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StubServer:
    """`python -m server_stub` on a fixed port and data dir, restartable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        (root / "repos").mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        env = {**os.environ, "FERRY_SERVER_ADMIN_TOKEN": ADMIN,
               "FERRY_SERVER_REGISTRATION_TOKEN": REGISTRATION}
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server_stub", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--data-dir", str(self.root / "data"),
             "--repos", str(self.root / "repos"), "--no-access-log"],
            cwd=REPO, env=env, stdout=log, stderr=log)
        log.close()
        wait_until(self._answers, timeout=20, message="stub server to answer")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError("stub server exited: "
                                 + (self.root / "server.log").read_text()[-2000:])
        try:
            requests.get(self.url + "/api/v1/runs", timeout=2)
            return True
        except requests.RequestException:  # refused, or accepted but not answering yet
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def register(self, name: str = "sync-test") -> tuple[str, str]:
        resp = requests.post(self.url + "/api/v1/runners/register",
                             json={"name": name, "labels": []},
                             headers={"Authorization": f"Bearer {REGISTRATION}"}, timeout=10)
        resp.raise_for_status()
        body = resp.json()
        return body["runner_id"], body["token"]

    def admin_get(self, path: str) -> requests.Response:
        resp = requests.get(self.url + "/api/v1" + path,
                            headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
        resp.raise_for_status()
        return resp


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[StubServer]:
    server = StubServer(tmp_path / "stub")
    try:
        yield server
    finally:
        server.kill()
