"""Whole workflows through the engine: host and container runtimes give the same final state."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from runner.engine.executor import Executor, ExecutorSettings
from runner.paths import Paths
from runner.runtimes.base import Runtime
from runner.runtimes.direct import DirectRuntime
from runner.runtimes.docker import DockerRuntime
from runner.state.local import LocalBackend
from runner.workflow.model import Workflow

HOST_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}

WORKFLOW = """
version: "1"
name: contract
state:
  schema:
    - name: regions
      type: array
      items: {type: object}
    - {name: count, type: number}
    - {name: note, type: string}
    - {name: seen, type: array, items: {type: string}}
nodes:
  - id: produce
    env: {GREETING: "hello world"}
    steps:
      - name: write state and outputs
        run: |
          echo 'regions@={"region": "eu"}' >> "$STATE_OUTPUTS"
          echo 'regions@={"region": "us"}' >> "$STATE_OUTPUTS"
          echo "count=2" >> "$STATE_OUTPUTS"
          echo "greeting=$GREETING" >> "$TASK_OUTPUTS"
          echo "made in the workspace" > produced.txt
      - name: shebang
        run: |
          #!/bin/sh
          echo "note=$(cat produced.txt | tr ' ' '_')" >> "$STATE_OUTPUTS"
  - id: fanout
    depends_on: [produce]
    strategy: {type: matrix, from_state: regions}
    steps:
      - run: |
          echo "seen@=\\"${region}-${{tasks.produce.outputs.greeting}}\\"" >> "$STATE_OUTPUTS"
  - id: broken
    depends_on: [produce]
    steps:
      - run: |
          echo "about to fail"
          exit 5
  - id: blocked
    depends_on: [broken]
    steps:
      - run: echo never
"""


def _workflow(runtime: dict[str, Any] | None) -> Workflow:
    data = yaml.safe_load(WORKFLOW)
    for node in data["nodes"]:
        if runtime is not None:
            node["runtime"] = copy.deepcopy(runtime)
    return Workflow.model_validate(data)


def _run(tmp: Path, name: str, runtimes: dict[str, Runtime], workflow: Workflow,
         ) -> dict[str, Any]:
    root = tmp / name
    workspace = root / "ws"
    workspace.mkdir(parents=True)
    paths = Paths.under(root / "home")
    backend = LocalBackend(root / "ferry.db", root / "logs")
    settings = ExecutorSettings(writer=f"test-{name}", max_parallel=2, workspace=workspace,
                                control_root=paths.work_dir, env=HOST_ENV,
                                runner_id=f"wf-{name}")
    executor = Executor(backend, runtimes, settings)
    run_id = executor.create_run(workflow)
    status = executor.execute(run_id, threading.Event())
    doc = backend.load(run_id)
    assert doc["status"] == status
    doc["_workspace_file"] = (workspace / "produced.txt").read_text()
    doc["_logs"] = {t["node_id"]: backend.read_log(run_id, tid) for tid, t in doc["tasks"].items()
                    if t["node_id"] in ("broken",)}
    return doc


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What must be identical whatever ran the steps."""
    tasks = sorted(((t["node_id"], t.get("matrix") and t["matrix"].get("region"), t["status"],
                     t["outputs"]) for t in doc["tasks"].values()), key=repr)
    state = dict(doc["state"])
    state["seen"] = sorted(state.get("seen", []))
    return {"status": doc["status"], "state": state, "tasks": tasks,
            "file": doc["_workspace_file"], "logs": doc["_logs"]}


@pytest.mark.docker
def test_same_workflow_same_result_on_host_and_docker(tmp_path: Path, docker_image: str) -> None:
    host = _run(tmp_path, "host", {"direct": DirectRuntime(HOST_ENV, grace_seconds=1.0)},
                _workflow(None))
    container_runtime = DockerRuntime(docker.from_env, runner_id="wf-docker", grace_seconds=1.0)
    in_docker = _run(tmp_path, "docker", {"docker": container_runtime},
                     _workflow({"type": "docker", "image": docker_image}))
    expected = _summary(host)
    assert expected["status"] == "Failed"
    assert expected["state"] == {"regions": [{"region": "eu"}, {"region": "us"}],
                                 "count": 2,
                                 "note": "made_in_the_workspace",
                                 "seen": ["eu-hello world", "us-hello world"]}
    assert expected["file"] == "made in the workspace\n"
    assert expected["logs"] == {"broken": b"about to fail\n"}
    assert ("blocked", None, "Blocked", {}) in expected["tasks"]
    assert _summary(in_docker) == expected
    client = docker.from_env()
    assert client.containers.list(all=True, filters={"label": "ferry.runner=wf-docker"}) == []
