"""Secrets in the engine: `${{ secrets.X }}` resolves in run, env and template inputs; the value
is masked in the log, the events, the task's error and its outputs, and never in argv."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from runner.document import RunStatus
from runner.engine import events as ev
from runner.engine.events import CollectingSink
from runner.engine.executor import Executor, ExecutorSettings
from runner.paths import Paths
from runner.runtimes.direct import DirectRuntime
from tests.unit.engine.engine_support import MemoryBackend, one, workflow

TOKEN = "tok-9f8e7d6c5b4a"
KEY = "AKIA-secret-param-77"


def _run(tmp_path: Path, text: str, *, secrets: dict[str, str] | None = None,
         params: dict[str, str] | None = None, secret_params: dict[str, str] | None = None,
         ) -> tuple[RunStatus, dict[str, Any], MemoryBackend, CollectingSink]:
    backend, sink = MemoryBackend(), CollectingSink()
    (tmp_path / "ws").mkdir(exist_ok=True)
    settings = ExecutorSettings(workspace=tmp_path / "ws",
                                control_root=Paths.under(tmp_path / "home").work_dir,
                                env=dict(os.environ), secrets=secrets or {},
                                secret_params=secret_params or {})
    executor = Executor(backend, {"direct": DirectRuntime(dict(os.environ), 1.0)}, settings,
                        events=sink)
    run_id = executor.create_run(workflow(text), params=params or {})
    status = executor.execute(run_id, threading.Event())
    return status, backend.load(run_id), backend, sink


def _everything(doc: dict[str, Any], backend: MemoryBackend, sink: CollectingSink) -> str:
    logs = b"".join(bytes(v) for v in backend.logs.values()).decode()
    history = "".join(repr(d.ops) for d in backend.history(doc["id"]))
    rest = {k: v for k, v in doc.items() if k != "workflow"}  # the workflow text is not secret
    return f"{rest}{logs}{history}{sink.events}"


def test_secret_in_run_env_and_template_inputs_reaches_the_step_and_is_masked(
        tmp_path: Path) -> None:
    status, doc, backend, sink = _run(tmp_path, """
version: "1"
templates:
  - id: t
    inputs: [{name: tok, required: true}]
    steps:
      - run: test "${{ inputs.tok }}" = "$EXPECT" && echo "template got ${{ inputs.tok }}"
nodes:
  - id: a
    env: {NODE_TOKEN: "${{ secrets.TOKEN }}", EXPECT: "${{ secrets.TOKEN }}"}
    steps:
      - run: |
          test "$NODE_TOKEN" = "$STEP_TOKEN"
          echo "run sees ${{ secrets.TOKEN }} / $NODE_TOKEN"
          printf '%s' "$NODE_TOKEN" | base64
          echo "leak=$NODE_TOKEN" >> "$STATE_OUTPUTS"
          echo "out={\\"t\\": \\"$NODE_TOKEN\\"}" >> "$TASK_OUTPUTS"
        env: {STEP_TOKEN: "${{ secrets.TOKEN }}"}
      - use: {template: t, inputs: {tok: "${{ secrets.TOKEN }}"}}
""", secrets={"TOKEN": TOKEN})
    assert status == RunStatus.COMPLETED, one(doc, "a")["error"]
    log = bytes(backend.logs[(doc["id"], one(doc, "a")["id"])]).decode()
    assert log.splitlines()[0] == "run sees *** / ***"
    assert "template got ***" in log
    assert doc["state"] == {"leak": "***"}
    assert one(doc, "a")["outputs"] == {"out": {"t": "***"}}
    lines = [e.line for e in sink.events if isinstance(e, ev.OutputLine)]
    assert lines[0] == "run sees *** / ***"
    assert TOKEN not in _everything(doc, backend, sink)


def test_an_unknown_secret_fails_the_task_naming_it(tmp_path: Path) -> None:
    status, doc, _, _ = _run(tmp_path, """
version: "1"
nodes:
  - id: a
    steps:
      - run: echo ${{ secrets.MISSING_ONE }}
""", secrets={"OTHER": TOKEN})
    assert status == RunStatus.FAILED
    error = one(doc, "a")["error"]
    assert "secrets.MISSING_ONE" in error and TOKEN not in error


def test_a_failing_step_error_and_its_name_are_masked(tmp_path: Path) -> None:
    status, doc, backend, sink = _run(tmp_path, """
version: "1"
nodes:
  - id: a
    steps:
      - run: "echo ${{ secrets.TOKEN }}; exit 4"
""", secrets={"TOKEN": TOKEN})
    assert status == RunStatus.FAILED
    # a default step name is the script's first line as written (never resolved)
    assert one(doc, "a")["error"] == ("step 'echo ${{ secrets.TOKEN }}; exit 4' failed: "
                                      "exit code 4")
    assert TOKEN not in _everything(doc, backend, sink)


def test_a_script_holding_a_secret_is_neither_in_argv_nor_on_disk(tmp_path: Path) -> None:
    status, doc, _, _ = _run(tmp_path, """
version: "1"
nodes:
  - id: a
    steps:
      - run: |
          T='${{ secrets.TOKEN }}'
          if tr '\\0' ' ' < /proc/$$/cmdline | grep -qF "$T"; then exit 7; fi
          if grep -rqF "$T" "$(dirname "$STATE_OUTPUTS")"; then exit 8; fi
          if env | grep -q FERRY_STEP_SCRIPT; then exit 9; fi
          test $# = 0
      - run: |
          #!/bin/sh
          T='${{ secrets.TOKEN }}'
          if tr '\\0' ' ' < /proc/$$/cmdline | grep -qF "$T"; then exit 7; fi
      - run: |
          ! ls "$(dirname "$STATE_OUTPUTS")"/step-1.sh
""", secrets={"TOKEN": TOKEN})
    assert status == RunStatus.COMPLETED, one(doc, "a")["error"]


def test_secret_params_reach_the_step_but_the_document_holds_stars(tmp_path: Path) -> None:
    status, doc, backend, sink = _run(tmp_path, """
version: "1"
nodes:
  - id: a
    steps:
      - run: test "${{ params.key }}" = "AKIA-secret-param-77" && echo "${{ params.key }}"
""", params={"key": "***", "region": "eu"}, secret_params={"key": KEY})
    assert status == RunStatus.COMPLETED, one(doc, "a")["error"]
    assert doc["params"] == {"key": "***", "region": "eu"}
    assert KEY not in _everything(doc, backend, sink)
