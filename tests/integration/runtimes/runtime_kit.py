"""Helpers for the runtime tests: open tasks on any runtime, write step scripts, collect output."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runner.runtimes.base import StepResult, StepSpec, TaskHandle, TaskSpec
from runner.workflow.model import Runtime as RuntimeOptions


@dataclass
class Output:
    """A sink that keeps every chunk and can run a hook on each one."""

    chunks: list[bytes] = field(default_factory=list)
    hook: Callable[[bytes], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, chunk: bytes) -> None:
        with self.lock:
            self.chunks.append(chunk)
        if self.hook is not None:
            self.hook(chunk)

    @property
    def text(self) -> str:
        """Everything received so far, decoded."""
        with self.lock:
            return b"".join(self.chunks).decode()


@dataclass
class Task:
    """An open task plus its directories, with shortcuts to run shell steps."""

    handle: TaskHandle
    workspace: Path
    control: Path
    count: int = 0

    def script(self, text: str, name: str | None = None) -> Path:
        """Write a step script to the control dir (mode 0755) and return its host path."""
        self.count += 1
        path = self.control / (name or f"step-{self.count}.sh")
        path.write_text(text)
        path.chmod(0o755)
        return path

    def argv(self, text: str) -> list[str]:
        """The executor's argv for `run` text: the script itself with a shebang, else sh -e."""
        path = self.handle.path_for(self.script(text))
        return [path] if text.startswith("#!") else ["/bin/sh", "-e", path]

    def run(self, text: str, *, env: dict[str, str] | None = None, timeout: float | None = None,
            cancel: threading.Event | None = None, sink: Output | None = None,
            ) -> tuple[StepResult, Output]:
        """Run `text` as one step and return its result and output."""
        out = sink or Output()
        step = StepSpec(index=self.count, name=f"step {self.count}", argv=self.argv(text),
                        env=env or {}, timeout=timeout)
        result = self.handle.run_step(step, out, cancel or threading.Event())
        return result, out


def task_spec(tmp: Path, options: RuntimeOptions, *, env: dict[str, str] | None = None,
              name: str = "t", run_id: str = "run-1", runner_id: str = "local") -> TaskSpec:
    """A TaskSpec with fresh workspace and control directories under `tmp`."""
    workspace = tmp / f"{name}-ws"
    control = tmp / f"{name}-ctl"
    workspace.mkdir(parents=True, exist_ok=True)
    control.mkdir(parents=True, exist_ok=True)
    return TaskSpec(run_id=run_id, task_id=f"task-{name}", node_id=f"node-{name}",
                    options=options, workspace=workspace, control_dir=control,
                    env=env or {}, runner_id=runner_id)
