"""The runtime protocol: how the executor runs a task's steps, whatever runs them.

A runtime opens one `TaskHandle` per task (for containers: one container per task), runs the
task's steps in order through it, and closes it when the task ends, whatever the outcome.
The executor owns everything workflow-specific: it resolves variables, writes each step's script
to a file in the task's control directory, and builds the argv; the runtime only executes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from runner.workflow.model import Runtime as RuntimeOptions

OutputSink = Callable[[bytes], None]
"""Receives a step's output as it arrives: stdout and stderr interleaved in arrival order."""


@dataclass(frozen=True)
class Mount:
    """A host file or directory a container task sees read-only at `target` (the Codemod CLI,
    a workflow directory outside the workspace); the host runtime sees it where it is."""

    source: Path
    target: str


@dataclass(frozen=True)
class TaskSpec:
    """What a runtime needs to open a task."""

    run_id: str
    task_id: str
    node_id: str
    options: RuntimeOptions
    workspace: Path
    """Host directory that is the steps' working directory (mounted at /workspace in containers)."""
    control_dir: Path
    """Host directory of Ferry's per-task files: scripts, STATE_OUTPUTS, TASK_OUTPUTS
    (mounted at /ferry in containers)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Task-wide environment (node env, matrix values, FERRY_* ids); steps add their own."""
    runner_id: str = "local"
    ledger: Path | None = None
    """Where the runtime writes down what the task starts on this host (processes, cgroup,
    container) as it starts; `open` first ends what an earlier attempt of the task wrote
    there, so the task never runs twice at once here. None: nothing is recorded."""
    mounts: Sequence[Mount] = ()
    """Read-only tools and files the task's container needs (`path_for` maps them)."""


@dataclass(frozen=True)
class StepSpec:
    """One step to execute inside an open task."""

    index: int
    name: str
    argv: Sequence[str]
    """Already in the runtime's view of paths (see `TaskHandle.path_for`)."""
    env: Mapping[str, str]
    """Step environment merged over the task environment by the runtime."""
    timeout: float | None = None


@dataclass(frozen=True)
class StepResult:
    """How a step ended. A failing step is a value, not an exception."""

    exit_code: int | None
    signal: int | None = None
    reason: str | None = None
    """None for a normal exit; else 'timeout', 'canceled' or a one-line error."""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """The step exited 0 and was neither timed out nor canceled."""
        return self.exit_code == 0 and self.reason is None

    def describe(self) -> str:
        """One line for status output: 'exit code 3', 'timed out', 'killed by signal 9'..."""
        if self.reason == "timeout":
            return "timed out"
        if self.reason == "canceled":
            return "canceled"
        if self.reason:
            return self.reason
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        return f"exit code {self.exit_code}"


class TaskHandle(Protocol):
    """An open task: a process context on the host, or one running container."""

    notes: list[str]
    """What opening the task did that its log must say (an earlier attempt's processes or
    container ended before this attempt), one line each."""

    def path_for(self, host_path: Path) -> str:
        """The path a step process sees for a host path under the workspace or control dir."""
        ...

    def run_step(self, step: StepSpec, sink: OutputSink, cancel: threading.Event) -> StepResult:
        """Run one step to its end. Honour `step.timeout` and `cancel` by terminating the step's
        whole process tree (SIGTERM, grace, SIGKILL) and returning reason 'timeout'/'canceled'."""
        ...

    def close(self) -> None:
        """Release everything the task holds (stop and remove its container). Idempotent."""
        ...


class Runtime(Protocol):
    """A factory of task handles for one runtime type."""

    name: str

    def open(self, spec: TaskSpec) -> TaskHandle:
        """End what an earlier attempt of the task left (`spec.ledger`), then prepare the task.
        Raise `RuntimeUnavailable` (one line: which image, why) on failure, also when an earlier
        attempt's processes cannot be stopped."""
        ...

    def reap(self, active_run_ids: set[str]) -> int:
        """Remove leftovers (containers) of runs that are not active; return how many."""
        ...
