"""Start the stub as a real subprocess on 127.0.0.1 (tests, benchmarks, demos).

    with StubProcess.start(tmp / "data", tmp / "repos") as stub:
        requests.get(stub.url + "/api/v1/runs", headers=stub.admin_headers)

The first start binds an ephemeral port; `kill()`/`stop()` and `launch()` (or `restart()`)
bring the same server back on the same data dir and the same port, so clients and runners
configured with its URL find it again.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import requests

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0
_PROBE_TIMEOUT = 2.0  # one readiness request; a loaded machine may take a while to answer


class StubProcess:
    """A `ferry-server` child with known tokens, restartable on its data dir and port."""

    def __init__(self, data_dir: Path, repos_dir: Path, *extra: str, port: int = 0,
                 admin_token: str | None = None, registration_token: str | None = None,
                 ready_timeout: float = READY_TIMEOUT) -> None:
        self.data_dir = data_dir
        self.repos_dir = repos_dir
        self.extra = list(extra)
        self.port = port
        self.admin_token = admin_token or "fa_" + secrets.token_urlsafe(24)
        self.registration_token = registration_token or "fr_" + secrets.token_urlsafe(24)
        self.ready_timeout = ready_timeout
        self.log_path = data_dir / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, data_dir: Path, repos_dir: Path, *extra: str, port: int = 0,
              timeout: float = READY_TIMEOUT, admin_token: str | None = None,
              registration_token: str | None = None) -> StubProcess:
        """Start `python -m server_stub` (extra flags such as `--lease-ttl 1` appended) and
        wait until it answers HTTP."""
        stub = cls(data_dir, repos_dir, *extra, port=port, admin_token=admin_token,
                   registration_token=registration_token, ready_timeout=timeout)
        stub.launch()
        return stub

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The current child process."""
        if self._proc is None:
            raise RuntimeError("the stub has not been started")
        return self._proc

    @property
    def url(self) -> str:
        """Base URL (no /api/v1); known once the first start picked the port."""
        if not self.port:
            raise RuntimeError("the stub has not been started: its port is not known yet")
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_headers(self) -> dict[str, str]:
        """Authorization header with the admin token."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    @property
    def running(self) -> bool:
        """True while the child lives."""
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        """The server's stdout/stderr so far (every start appends)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def launch(self) -> None:
        """Start the child (on the known port after the first start) and wait until it
        answers; raises RuntimeError with the log's tail if it exits or never answers."""
        if self.running:
            raise RuntimeError(f"the stub is already running on {self.url}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.repos_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.data_dir / "port"
        port_file.unlink(missing_ok=True)
        env = {**os.environ, "FERRY_SERVER_ADMIN_TOKEN": self.admin_token,
               "FERRY_SERVER_REGISTRATION_TOKEN": self.registration_token,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                           os.environ.get("PYTHONPATH")]))}
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "server_stub", "--host", "127.0.0.1",
                 "--port", str(self.port), "--port-file", str(port_file),
                 "--data-dir", str(self.data_dir), "--repos", str(self.repos_dir),
                 "--no-access-log", "--log-level", "warning", *self.extra],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        deadline = time.monotonic() + self.ready_timeout
        self._await(port_file.exists, deadline, "bind its port")
        self.port = int(port_file.read_text().strip())
        self._await(self._answers, deadline, "answer HTTP")

    def _answers(self) -> bool:
        try:
            requests.get(self.url + "/api/v1/runs", timeout=_PROBE_TIMEOUT)
        except requests.RequestException:  # refused, reset, or accepted but slow: not yet
            return False
        return True

    def _await(self, ready: Callable[[], bool], deadline: float, what: str) -> None:
        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the stub did not {what}: {self.log()[-2000:]}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status (None if never
        started)."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        return self._proc.returncode

    def kill(self) -> None:
        """SIGKILL (a crash: no graceful shutdown) and reap; a no-op when not running."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def restart(self, *, kill: bool = False) -> StubProcess:
        """Stop (or SIGKILL) and start again on the same data dir and port; returns self."""
        if kill:
            self.kill()
        else:
            self.stop()
        self.launch()
        return self

    def __enter__(self) -> StubProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
