"""Upstream's language on the control plane, end to end over real processes: params checked and
typed by the server, warnings kept with the run, a condition skipping a step on the runner,
CODEMOD_PATH in the fetched workspace, and re-running a Failed run's failed tasks
(`ferry resume --retry-failed --server`) while its completed tasks are kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.daemon.conftest import ADMIN, REPO_ROOT, Server

FLOW = """\
version: "1"
params:
  schema:
    env: {type: string, oneOf: [{type: string, enum: [dev, prod]}], default: dev}
    retries: {type: number, default: 2}
    token: {type: string, secret: true, default: from-the-workflow}
nodes:
  - id: build
    name: Build
    notes: a key Ferry does not know, but only descriptive
    steps:
      - name: count
        run: |
          echo run >> "%(counter)s"
          echo "bundle=$(basename "$CODEMOD_PATH") retries=${{ params.retries }}"
          echo "token=${{ params.token }}" > token.txt
          test "$(cat token.txt)" = "token=from-the-workflow"
      - name: prod only
        if: params.env == "prod"
        run: echo deploying
  - id: flaky
    name: Flaky
    depends_on: [build]
    steps:
      - {name: check, run: 'test -f "%(marker)s"'}
  - id: after
    name: After
    depends_on: [flaky]
    steps:
      - {name: done, run: echo after}
"""


def _cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args, "--server", server.url,
                           "--token", ADMIN], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60)


def test_params_warnings_conditions_and_retry_failed_on_the_control_plane(
        server: Server, make_daemon: Any, tmp_path: Path) -> None:
    counter, marker = tmp_path / "counter", tmp_path / "fixed"
    server.repo("lang", {"flows/flow.yaml": FLOW % {"counter": counter, "marker": marker}})
    bad = _cli(server, "submit", "--repo", "lang", "-w", "flows/flow.yaml", "--param",
               "env=test", "--param", "retries=many", "--param", "other=1")
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "ferry: error: param 'env' is \"test\", not one of: dev, prod",
        "ferry: error: param 'retries': \"many\" is not a valid number",
        "ferry: error: param 'other' is not declared in params.schema (declared: env, retries, "
        "token)"]
    strict = _cli(server, "submit", "--repo", "lang", "-w", "flows/flow.yaml", "--strict")
    assert strict.returncode == 2 and "unknown key 'notes'" in strict.stderr
    made = _cli(server, "submit", "--repo", "lang", "-w", "flows/flow.yaml", "--param",
                "retries=5")
    assert made.returncode == 0, made.stderr
    assert "ferry: Warning at nodes[0].notes: unknown key 'notes' (line 10)" in made.stderr
    run_id = made.stdout.strip()
    doc = server.run(run_id)
    assert doc["params"] == {"env": "dev", "retries": 5, "token": "***"}
    assert doc["warnings"] == ["Warning at nodes[0].notes: unknown key 'notes' (line 10)"]

    daemon = make_daemon(server)
    daemon.register()
    daemon.start("--once")
    assert daemon.wait(90) == 1, daemon.log()
    doc = server.run(run_id)
    tasks = {t["node_id"]: t for t in doc["tasks"].values()}
    assert {n: t["status"] for n, t in tasks.items()} == {
        "build": "Completed", "flaky": "Failed", "after": "Blocked"}
    assert server.task_log(run_id, tasks["build"]["id"]) == b"bundle=flows retries=5\n"
    assert tasks["build"]["skipped"] == [{"step": 1, "name": "prod only",
                                          "if": 'params.env == "prod"'}]
    status = _cli(server, "status", "-i", run_id)
    assert "Warning: nodes[0].notes: unknown key 'notes' (line 10)" in status.stdout
    assert "[skipped: 'prod only']" in status.stdout
    logs = _cli(server, "logs", "-i", run_id)
    assert logs.stdout.splitlines()[0] == ("[run] Warning at nodes[0].notes: unknown key "
                                           "'notes' (line 10)")

    marker.write_text("")
    again = _cli(server, "resume", "-i", run_id, "--retry-failed")
    assert again.returncode == 0, again.stderr
    assert "Failed tasks reset" in again.stdout and "queued for a runner" in again.stdout
    assert server.status(run_id) == "Pending"
    daemon.start("--once")
    assert daemon.wait(90) == 0, daemon.log()
    doc = server.run(run_id)
    assert doc["status"] == "Completed"
    assert {t["node_id"]: t["status"] for t in doc["tasks"].values()} == {
        "build": "Completed", "flaky": "Completed", "after": "Completed"}
    assert counter.read_text() == "run\n"  # the completed task did not run again
    twice = _cli(server, "resume", "-i", run_id, "--retry-failed")
    assert twice.returncode == 2 and "only a Failed run's failed tasks" in twice.stderr
