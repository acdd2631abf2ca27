"""A real stub server (subprocess, 127.0.0.1) that the sync tests can kill and start again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers.stub import StubHandle

ADMIN = "admin-token-for-sync-tests"
REGISTRATION = "registration-token-for-sync-tests"


class StubServer(StubHandle):
    """The stub on one data dir; not started until `start()`, then restartable on its port."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, admin_token=ADMIN, registration_token=REGISTRATION)

    def register(self, name: str = "sync-test") -> tuple[str, str]:
        """A new runner: (runner_id, token)."""
        resp = requests.post(self.url + "/api/v1/runners/register",
                             json={"name": name, "labels": []},
                             headers={"Authorization": f"Bearer {REGISTRATION}"}, timeout=10)
        resp.raise_for_status()
        body = resp.json()
        return body["runner_id"], body["token"]

    def admin_get(self, path: str) -> requests.Response:
        """GET /api/v1<path> with the admin token."""
        return self.admin_call("GET", path)


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[StubServer]:
    """A stub the test starts itself; killed at the end."""
    server = StubServer(tmp_path / "stub")
    try:
        yield server
    finally:
        server.kill()
