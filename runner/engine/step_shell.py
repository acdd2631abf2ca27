"""A `run` step: its argv (inline, through the environment when it holds a secret, or a script
file in the task's control dir), run through the task's handle."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from runner.engine.step_output import StepOutput
from runner.engine.steps import INLINE_LIMIT, Rendered, argv_for, inline_argv
from runner.engine.task_scope import TaskScope
from runner.runtimes.base import StepResult, StepSpec, TaskHandle

SCRIPT_VAR = "FERRY_STEP_SCRIPT"
_FROM_ENV = f'set -- "${SCRIPT_VAR}"; unset {SCRIPT_VAR}; eval "set --\n$1"'


def secret_shell(script: str) -> tuple[list[str] | None, dict[str, str]]:
    """A shell script holding a secret: given to `sh -e -c` through the environment, which the
    shell reads and unsets before running it (with no positional parameters, as inline), so it
    is neither in argv nor on disk. (None, {}) when it cannot be (a NUL byte, or too large for
    one environment string): it then goes to the control dir's file, removed after the step."""
    if "\0" in script or len(script.encode("utf-8", "surrogateescape")) > INLINE_LIMIT:
        return None, {}
    return ["/bin/sh", "-e", "-c", _FROM_ENV], {SCRIPT_VAR: script}


def run_shell_step(task: TaskScope, handle: TaskHandle, control: Path, rendered: Rendered,
                   step_no: int, files_env: Mapping[str, str], timeout: float | None,
                   output: StepOutput) -> StepResult:
    """Run a rendered `run` step (announced, its output streamed); marks the task as one whose
    shell may have changed any file."""
    # A script holding a secret never goes in argv (`ps` and `docker inspect` show it)
    # nor, for a shell script, on disk: see `secret_shell`.
    secret = task.s.masker.found_in(rendered.script)
    extra: dict[str, str] = {}
    argv = None if secret else inline_argv(rendered.script, rendered.shebang)
    if secret and not rendered.shebang:
        argv, extra = secret_shell(rendered.script)
    script = None
    if argv is None:
        script = control / f"step-{step_no}.sh"
        script.write_text(rendered.script)
        os.chmod(script, 0o755)
        argv = argv_for(handle.path_for(script), rendered.shebang)
    task.shell = True
    env = {**rendered.env, **files_env, **extra}
    name = task.s.masker.text(rendered.name)
    try:
        return task.run_step(handle, StepSpec(step_no, name, argv, env, timeout), output)
    finally:
        if secret and script is not None:
            script.unlink(missing_ok=True)
