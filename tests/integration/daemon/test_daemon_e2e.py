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


def test_containers_left_by_a_killed_runner_are_reaped_at_start(
        server: Server, make_daemon: Any, docker_image: str) -> None:
    import subprocess

    import yaml

    daemon = make_daemon(server)
    daemon.register()
    runner_id = yaml.safe_load((daemon.home / "config" / "runner.yaml").read_text())["runner"][
        "runner_id"]
    # what a SIGKILLed runner leaves: a task container with Ferry's labels, still running
    created = subprocess.run(
        ["docker", "run", "-d", "--label", f"ferry.runner={runner_id}",
         "--label", "ferry.run=run-of-a-dead-runner", "--label", "ferry.task=t",
         "--label", "ferry.node=n", docker_image, "sleep", "300"],
        capture_output=True, text=True, check=True)
    container = created.stdout.strip()
    other = subprocess.run(["docker", "run", "-d", "--label", "ferry.runner=another-runner",
                            docker_image, "sleep", "300"],
                           capture_output=True, text=True, check=True).stdout.strip()
    try:
        daemon.start("--idle-timeout", "1s")
        assert daemon.wait(60) == 0, daemon.log()
        gone = subprocess.run(["docker", "inspect", container], capture_output=True)
        assert gone.returncode != 0, "the leftover container survived the daemon's start"
        assert daemon.logged("removed leftover containers"), daemon.log()
        kept = subprocess.run(["docker", "inspect", other], capture_output=True)
        assert kept.returncode == 0, "another runner's container must not be touched"
    finally:
        subprocess.run(["docker", "rm", "-f", container, other], capture_output=True)
