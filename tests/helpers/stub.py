"""The base of each suite's server helper: one restartable stub process (see
`server_stub.testing.StubProcess`) with its URL, start/kill and admin calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from server_stub.testing import StubProcess


class StubHandle:
    """The stub on `root/data` and `root/repos` with fixed tokens; nothing runs until
    `start()`, which after the first time comes back on the same port and data."""

    def __init__(self, root: Path, *flags: str, admin_token: str,
                 registration_token: str) -> None:
        self.repos = root / "repos"
        self.process = StubProcess(root / "data", self.repos, *flags, admin_token=admin_token,
                                   registration_token=registration_token)

    @property
    def url(self) -> str:
        """Base URL (stable across restarts)."""
        return self.process.url

    @property
    def port(self) -> int:
        """The port it listens on (stable across restarts)."""
        return self.process.port

    def start(self) -> None:
        """Start (again) and wait until it answers HTTP."""
        self.process.launch()

    def kill(self) -> None:
        """SIGKILL, as in a crash (a no-op when not running)."""
        self.process.kill()

    def log(self) -> str:
        """The server's output so far."""
        return self.process.log()

    def admin_call(self, method: str, path: str, **kw: Any) -> requests.Response:
        """`method /api/v1<path>` with the admin token; an HTTP error fails the test."""
        resp = requests.request(method, self.url + "/api/v1" + path, timeout=30,
                                headers=self.process.admin_headers, **kw)
        if resp.status_code >= 400:
            raise AssertionError(f"{method} {path}: {resp.status_code} {resp.text}")
        return resp
