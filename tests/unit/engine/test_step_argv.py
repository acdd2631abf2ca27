"""How a step's script reaches the shell: inline `sh -e -c` when it fits, a file otherwise."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from runner.document import RunStatus
from runner.engine.steps import INLINE_LIMIT, inline_argv
from tests.unit.engine.engine_support import make_executor, one, workflow


def test_small_shell_script_is_inline() -> None:
    assert inline_argv("echo hi\n", False) == ["/bin/sh", "-e", "-c", "echo hi\n"]


@pytest.mark.parametrize("script, shebang", [
    ("#!/bin/sh\necho hi\n", True),
    ("-x\n", False),
    ("+e\n", False),
    ("echo a\0b\n", False),
    ("x" * (INLINE_LIMIT + 1), False),
    ("é" * (INLINE_LIMIT // 2 + 1), False),  # the limit counts bytes, not characters
])
def test_scripts_that_need_a_file(script: str, shebang: bool) -> None:
    assert inline_argv(script, shebang) is None


def test_inline_argv_keeps_sh_e_semantics() -> None:
    argv = inline_argv("false\necho not reached\n", False)
    assert argv is not None
    done = subprocess.run(argv, capture_output=True, check=False)
    assert done.returncode == 1 and done.stdout == b""


def test_long_and_option_like_scripts_still_run(tmp_path: Path) -> None:
    executor, backend, _ = make_executor(tmp_path)
    long_run = "true\n" * (INLINE_LIMIT // 5 + 10) + "echo long done\n"
    run_id = executor.create_run(workflow({
        "version": "1",
        "nodes": [{"id": "a", "steps": [
            {"run": long_run},
            {"run": "-\n"},  # runs from a file: sh reports the missing '-' command, exit 127
        ]}]}))
    assert executor.execute(run_id, threading.Event()) == RunStatus.FAILED
    doc = backend.load(run_id)
    task = one(doc, "a")
    assert task["step"] == 1 and "exit code 127" in task["error"]
    assert b"long done\n" in backend.read_log(run_id, task["id"])
