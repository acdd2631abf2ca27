"""End to end over real processes: register, claim, fetch, execute, report, finish."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from tests.integration.daemon.conftest import REGISTRATION, Server

HELLO = """\
version: "1"
nodes:
  - id: build
    name: Build
    type: automatic
    steps:
      - name: compile
        run: |
          echo "building $(cat src/input.txt)"
          echo "artifact=ok" >> "$STATE_OUTPUTS"
  - id: test
    name: Test
    type: automatic
    depends_on: [build]
    steps:
      - name: check
        run: echo "testing"
"""


def test_once_runs_a_claimed_run_to_completion(server: Server, make_daemon: Any) -> None:
    server.repo("demo", {"flows/hello.yaml": HELLO, "src/input.txt": "payload-42"})
    run_id = server.submit("demo", "flows/hello.yaml")
    daemon = make_daemon(server)
    reg = daemon.register(labels="linux")
    assert REGISTRATION not in reg.stdout + reg.stderr
    config = daemon.home / "config" / "runner.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    daemon.start("--once")
    assert daemon.wait(90) == 0, daemon.log()
    doc = server.run(run_id)
    assert doc["status"] == "Completed", doc
    assert doc["state"].get("artifact") == "ok"
    tasks = {t["node_id"]: t for t in doc["tasks"].values()}
    assert {n: t["status"] for n, t in tasks.items()} == {"build": "Completed",
                                                          "test": "Completed"}
    assert server.task_log(run_id, tasks["build"]["id"]) == b"building payload-42\n"
    assert server.info(run_id)["queue"] == "done"
    # The journal is fully delivered: nothing left to replay.
    journal = daemon.home / "data" / "journal"
    assert not list(journal.glob("*.jsonl"))
    # Local log copy equals the server's log.
    local = daemon.home / "data" / "logs" / run_id / f"{tasks['build']['id']}.log"
    assert local.read_bytes() == server.task_log(run_id, tasks["build"]["id"])
    token = config.read_text().split("token:")[1].split()[0]
    assert token not in daemon.log()
    assert Path(daemon.home / "data" / "work" / run_id / "workspace").exists() is False
