"""Real processes for the daemon tests: the stub server and `python -m runner daemon`, each a
subprocess with its own directories, killable and restartable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.gitrepo import Symlink, commit, init_bare
from tests.helpers.stub import StubHandle

REPO_ROOT = Path(__file__).resolve().parents[3]
ADMIN = "admin-token-daemon-tests-0123456789"
REGISTRATION = "registration-token-daemon-tests-0123456789"


class Server(StubHandle):
    """The stub on its own data dir, started by `start()`, killable and restartable on its
    port (runners keep its URL); `lease_ttl`/`offline_grace` are the server's flags."""

    def __init__(self, root: Path, *extra: str, lease_ttl: float = 30,
                 offline_grace: float = 600) -> None:
        super().__init__(root, "--lease-ttl", str(lease_ttl), "--offline-grace",
                         str(offline_grace), *extra, admin_token=ADMIN,
                         registration_token=REGISTRATION)

    # -- admin side ------------------------------------------------------------------------
    def repo(self, name: str, files: Mapping[str, str | bytes | Symlink]) -> str:
        """A bare repo `name` holding `files`; returns the commit SHA."""
        path = self.repos / f"{name}.git"
        if not path.exists():
            init_bare(self.repos, name)
        return commit(path, files)

    def submit(self, repo: str, workflow_path: str, *, params: dict[str, str] | None = None,
               labels: list[str] | None = None, distributed: bool = False) -> str:
        body = {"repo": repo, "ref": "main", "workflow_path": workflow_path,
                "params": params or {}, "labels": labels or [], "distributed": distributed}
        return str(self.admin_call("POST", "/runs", json=body).json()["id"])

    def run(self, run_id: str) -> dict[str, Any]:
        """The materialized run document."""
        return dict(self.admin_call("GET", f"/runs/{run_id}").json())

    def info(self, run_id: str) -> dict[str, Any]:
        """The run's queue entry (RunInfo)."""
        for run in self.admin_call("GET", "/runs", params={"limit": 1000}).json()["runs"]:
            if run["id"] == run_id:
                return dict(run)
        raise AssertionError(f"run {run_id} not listed")

    def queues(self) -> dict[str, str]:
        """Every run's queue state by id, in one request."""
        runs = self.admin_call("GET", "/runs", params={"limit": 1000}).json()["runs"]
        return {r["id"]: r["queue"] for r in runs}

    def task_log(self, run_id: str, task_id: str) -> bytes:
        return self.admin_call("GET", f"/runs/{run_id}/logs/{task_id}").content

    def cancel(self, run_id: str) -> None:
        self.admin_call("POST", f"/runs/{run_id}/cancel")

    def trigger_all(self, run_id: str) -> None:
        self.admin_call("POST", f"/runs/{run_id}/trigger-all")

    def status(self, run_id: str) -> str:
        return str(self.run(run_id)["status"])


class DaemonProc:
    """`python -m runner daemon` with its own FERRY_HOME."""

    def __init__(self, home: Path, server: Server, name: str = "runner") -> None:
        self.home = home
        self.server = server
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "FERRY_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("WATCHDOG_USEC", None)
        self.stderr_path = home / "daemon.log"

    def register(self, labels: str = "",
                 url: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "runner", "register", "--server", url or self.server.url,
                "--token", REGISTRATION, "--name", self.name]
        if labels:
            argv += ["--labels", labels]
        result = subprocess.run(argv, cwd=REPO_ROOT, env=self.env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result

    def set_server(self, url: str) -> None:
        """Point the registered config at another URL (a fault proxy)."""
        import yaml

        path = self.home / "config" / "runner.yaml"
        data = yaml.safe_load(path.read_text())
        data["runner"]["server"] = url
        path.write_text(yaml.safe_dump(data))

    def start(self, *args: str, env: dict[str, str] | None = None) -> None:
        with open(self.stderr_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runner", "daemon", "--log-format", "json", *args],
                cwd=REPO_ROOT, env={**self.env, **(env or {})}, stdout=log, stderr=log)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("daemon did not exit; log:\n" + self.log()[-3000:]) from None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def logged(self, msg: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("msg") == msg]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "server")
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for a whole module (its start costs seconds); tests use their own runs."""
    srv = Server(tmp_path_factory.mktemp("shared-server"))
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Any]:
    made: list[DaemonProc] = []

    def make(server: Server, name: str = "runner") -> DaemonProc:
        home = tmp_path / f"home-{name}"
        home.mkdir()
        daemon = DaemonProc(home, server, name)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.kill()
