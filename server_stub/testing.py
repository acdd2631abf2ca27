"""Start the stub as a real subprocess on an ephemeral port (tests, benchmarks, demos).

    with StubProcess.start(tmp / "data", tmp / "repos") as stub:
        requests.get(stub.url + "/api/v1/runs", headers=stub.admin_headers)
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class StubProcess:
    """A running `ferry-server` child with known tokens."""

    proc: subprocess.Popen[bytes]
    url: str
    admin_token: str
    registration_token: str
    data_dir: Path
    repos_dir: Path
    log_path: Path
    extra: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, data_dir: Path, repos_dir: Path, *extra: str, timeout: float = 20.0,
              admin_token: str | None = None,
              registration_token: str | None = None) -> StubProcess:
        """Start `python -m server_stub --port 0` and wait until it listens."""
        data_dir.mkdir(parents=True, exist_ok=True)
        repos_dir.mkdir(parents=True, exist_ok=True)
        admin = admin_token or "fa_" + secrets.token_urlsafe(24)
        reg = registration_token or "fr_" + secrets.token_urlsafe(24)
        port_file = data_dir / "port"
        port_file.unlink(missing_ok=True)
        log_path = data_dir / "server.log"
        env = {**os.environ, "FERRY_SERVER_ADMIN_TOKEN": admin,
               "FERRY_SERVER_REGISTRATION_TOKEN": reg,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                           os.environ.get("PYTHONPATH")]))}
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "server_stub", "--host", "127.0.0.1", "--port", "0",
                 "--port-file", str(port_file), "--data-dir", str(data_dir), "--repos",
                 str(repos_dir), "--no-access-log", "--log-level", "warning", *extra],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the stub did not start: "
                                   + log_path.read_text(errors="replace")[-2000:])
            time.sleep(0.02)
        port = int(port_file.read_text().strip())
        return cls(proc, f"http://127.0.0.1:{port}", admin, reg, data_dir, repos_dir, log_path,
                   list(extra))

    @property
    def admin_headers(self) -> dict[str, str]:
        """Authorization header with the admin token."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def restart(self) -> StubProcess:
        """Stop and start again on the same data (a new port)."""
        self.stop()
        return StubProcess.start(self.data_dir, self.repos_dir, *self.extra,
                                 admin_token=self.admin_token,
                                 registration_token=self.registration_token)

    def __enter__(self) -> StubProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
