"""A real daemon told by the control plane: revoked (exit 6 with a clear message), drained
(finishes its run, claims no more, exits 0), and its version shown in the runners list."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from runner import __version__
from tests.helpers import wait_until
from tests.integration.daemon.conftest import ADMIN, REPO_ROOT, Server

SLOW = """version: "1"
nodes:
  - id: slow
    steps:
      - run: |
          echo started
          while [ ! -f "${{ params.flag }}" ]; do sleep 0.05; done
          echo done
"""


def _runner(server: Server, name: str) -> dict[str, Any]:
    runners = server.admin_call("GET", "/runners").json()["runners"]
    return next(r for r in runners if r["name"] == name)


def test_revoked_daemon_exits_6_saying_so(server: Server, make_daemon: Any) -> None:
    daemon = make_daemon(server, "to-revoke")
    daemon.register()
    daemon.start()
    info = wait_until(lambda: _runner(server, "to-revoke").get("version") and
                      _runner(server, "to-revoke"), timeout=30, message="the daemon's contact")
    assert info["version"] == __version__ and info["online"]
    server.admin_call("POST", f"/runners/{info['id']}/revoke")
    code = daemon.wait(30)
    errors = [e for e in daemon.events() if e.get("level") == "error"]
    print(errors)
    assert code == 6, daemon.log()[-2000:]
    assert any("revoked" in e.get("msg", "") and "ferry register" in e.get("msg", "")
               for e in errors), daemon.log()[-2000:]


def test_drained_daemon_finishes_its_run_then_exits_0(server: Server, make_daemon: Any,
                                                      tmp_path: Any) -> None:
    server.repo("drain", {"slow.yaml": SLOW, "quick.yaml": SLOW})
    flag = tmp_path / "flag"
    first = server.submit("drain", "slow.yaml", params={"flag": str(flag)})
    daemon = make_daemon(server, "to-drain")
    daemon.register()
    daemon.start("--concurrency", "2")
    wait_until(lambda: server.status(first) == "Running", timeout=60, message="run started")
    runner = _runner(server, "to-drain")
    server.admin_call("POST", f"/runners/{runner['id']}/drain")
    second = server.submit("drain", "quick.yaml", params={"flag": str(flag)})
    wait_until(lambda: daemon.logged("draining: no new claims"), timeout=30,
               message="the daemon drains")
    assert server.status(second) == "Pending"
    flag.write_text("go")
    assert daemon.wait(60) == 0, daemon.log()[-2000:]
    assert server.status(first) == "Completed"
    assert server.info(second)["queue"] == "queued", "a drained daemon claimed a run"
    listed = subprocess.run([sys.executable, "-m", "runner", "runners", "list", "--server",
                             server.url, "--token", ADMIN], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    print(listed.stdout)
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.startswith("to-drain"))
    assert "draining" in line and __version__ in line
