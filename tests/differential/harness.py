"""Running one workflow through both engines and reducing each outcome to what must agree.

`Outcome` is the comparable part of a run: the exit status, every task's final status (by node
and matrix item), each task's step output lines, and the final workflow state. The reference
engine (the Codemod CLI, upstream Butterflow) runs with an isolated HOME, so its run files are
read back from `$HOME/.local/share/butterflow`; Ferry runs through its CLI (`ferry run --json`)
with an isolated FERRY_HOME. Both run in the same fresh directory (their steps' working
directory) with the workflow file in it (their CODEMOD_PATH).

The reference engine never exits after a failed task that has dependents, a manual node or a
matrix expression error: a case marks that with `hangs`, the run is stopped after `timeout`
seconds and its outcome is what it had done by then (exit `HANG`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
HANG = "hang"
"""The exit status of a reference run stopped because it never exits."""
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass
class Outcome:
    """What a run did, in a form both engines can be compared in."""

    exit: tuple[int | str, ...]
    """The exit status of each command (run, then resume), HANG when it never exited."""
    tasks: list[tuple[str, str, str]] = field(default_factory=list)
    """(node, matrix item as canonical JSON or '' or 'master', status), sorted."""
    output: dict[str, list[str]] = field(default_factory=dict)
    """`node` or `node <matrix item JSON>` -> the lines its steps printed."""
    state: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""

    def status_of(self, node: str) -> list[str]:
        """The statuses of a node's tasks (masters included), sorted."""
        return sorted(status for n, _, status in self.tasks if n == node)


def item_key(matrix: dict[str, Any] | None) -> str:
    """A matrix item as both engines' tasks are matched by."""
    return json.dumps(matrix, sort_keys=True, separators=(",", ":")) if matrix else ""


def task_key(node: str, matrix: dict[str, Any] | None) -> str:
    """How a task's output is filed."""
    return f"{node} {item_key(matrix)}" if matrix else node


@dataclass(frozen=True)
class Invocation:
    """One command of a case: run the workflow, or resume it (`--trigger-all`)."""

    params: dict[str, str] = field(default_factory=dict)
    trigger_all: bool = False


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _call(argv: list[str], cwd: Path, env: dict[str, str], timeout: float
          ) -> tuple[int | str, str]:
    """Run a command in its own process group; HANG (the group killed) after `timeout`."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return HANG, ""
    return proc.returncode, out.decode("utf-8", "replace")


class Reference:
    """The Codemod CLI running workflows in a private HOME."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.home = home
        self.data = home / ".local" / "share" / "butterflow"

    def run(self, workflow: Path, workdir: Path, steps: list[Invocation], timeout: float
            ) -> Outcome:
        """Run (then resume) the workflow; the outcome after the last command."""
        env = {**CLEAN_ENV, "HOME": str(self.home)}
        exits: list[int | str] = []
        run_id = ""
        text = ""
        for step in steps:
            if step.trigger_all:
                argv = [str(self.binary), "--disable-analytics", "workflow", "resume", "-w",
                        str(workflow), "-i", run_id, "--trigger-all", "--no-interactive",
                        "--allow-dirty"]
            else:
                argv = [str(self.binary), "--disable-analytics", "workflow", "run", "-w",
                        str(workflow), "--no-interactive", "--allow-dirty"]
                for key, value in step.params.items():
                    argv += ["--param", f"{key}={value}"]
            status, text = _call(argv, workdir, env, timeout)
            exits.append(status)
            runs = sorted((self.data / "workflow_runs").glob("*.json"))
            run_id = runs[0].stem if runs else ""
        return self.outcome(tuple(exits), run_id, text)

    def outcome(self, exits: tuple[int | str, ...], run_id: str, text: str) -> Outcome:
        """Read the run's tasks and state back from the reference engine's files."""
        out = Outcome(exits, run_id=run_id)
        if not run_id:  # refused before it started (invalid workflow): the CLI's message
            plain = [_ANSI.sub("", line).strip() for line in text.splitlines()]
            errors = [line.lstrip("× ").strip() for line in plain if line.startswith("×")]
            out.output["(cli)"] = errors[:1] or [line for line in plain if line][-1:]
            return out
        for path in sorted((self.data / "tasks").glob("*.json")):
            task = json.loads(path.read_text())
            if task.get("workflow_run_id") != run_id:
                continue
            node, matrix = task["node_id"], task.get("matrix_values")
            key = "master" if task.get("is_master") else item_key(matrix)
            out.tasks.append((node, key, task["status"]))
            lines = [line[len("[stdio] "):] for line in task.get("logs") or []
                     if line.startswith("[stdio] ")]
            if lines:
                out.output[task_key(node, matrix)] = lines
        out.tasks.sort()
        state_file = self.data / "state" / f"{run_id}.json"
        out.state = json.loads(state_file.read_text()) if state_file.exists() else {}
        return out


class Ferry:
    """Ferry's CLI running workflows with a private FERRY_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def run(self, workflow: Path, workdir: Path, steps: list[Invocation], timeout: float
            ) -> Outcome:
        """Run (then resume) the workflow; the outcome after the last command."""
        env = {**CLEAN_ENV, "HOME": str(self.home), "FERRY_HOME": str(self.home / "ferry"),
               "FERRY_LIVE": "0"}
        exits: list[int | str] = []
        doc: dict[str, Any] | None = None
        lines: dict[str, list[str]] = {}
        for step in steps:
            if step.trigger_all:
                assert doc is not None, "resume needs a run"
                argv = [sys.executable, "-m", "runner", "resume", "-i", doc["id"],
                        "--trigger-all", "--json", "--workdir", str(workdir)]
            else:
                argv = [sys.executable, "-m", "runner", "run", "-w", str(workflow), "--json",
                        "--workdir", str(workdir)]
                for key, value in step.params.items():
                    argv += ["--param", f"{key}={value}"]
            status, text = _call(argv, workdir, env, timeout)
            exits.append(status)
            for raw in text.splitlines():
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if event.get("kind") == "output":
                    lines.setdefault(event["task_id"], []).append(event["line"])
                elif event.get("kind") == "run":
                    doc = event["run"]
            if doc is None:  # refused before a run was made
                tail = [line for line in text.splitlines() if line.strip()]
                return Outcome(tuple(exits), output={"(cli)": tail[-1:]})
        assert doc is not None
        out = Outcome(tuple(exits), state=doc.get("state") or {}, run_id=doc["id"])
        for task_id, task in doc["tasks"].items():
            key = "master" if task.get("master") else item_key(task.get("matrix"))
            out.tasks.append((task["node_id"], key, task["status"]))
            if lines.get(task_id):
                out.output[task_key(task["node_id"], task.get("matrix"))] = lines[task_id]
        out.tasks.sort()
        return out
