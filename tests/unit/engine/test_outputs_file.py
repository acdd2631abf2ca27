"""Per-task outputs files: emptied after each step, re-created when removed, never followed."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path

import pytest

from runner.document import RunStatus
from runner.engine.outputs import OutputsError, OutputsFile
from tests.unit.engine.engine_support import make_executor, one, workflow


def test_new_file_is_empty_and_world_writable(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        f = OutputsFile(tmp_path / "out", "STATE_OUTPUTS")
    finally:
        os.umask(old)
    info = os.lstat(f.path)
    assert info.st_size == 0
    assert stat.S_IMODE(info.st_mode) == 0o666  # a container user other than ours writes it


def test_take_returns_content_once_and_empties_the_file(tmp_path: Path) -> None:
    f = OutputsFile(tmp_path / "out", "STATE_OUTPUTS")
    inode = os.lstat(f.path).st_ino
    f.path.write_text("a=1\n")
    assert f.take() == "a=1\n"
    assert f.take() == ""
    assert f.path.read_bytes() == b""
    assert os.lstat(f.path).st_ino == inode  # truncated in place, not re-created


def test_removed_file_is_recreated(tmp_path: Path) -> None:
    f = OutputsFile(tmp_path / "out", "TASK_OUTPUTS")
    f.path.unlink()
    assert f.take() == ""
    assert f.path.is_file()


def _check_unwritable(directory: Path) -> None:
    f = OutputsFile(directory / "out", "TASK_OUTPUTS")
    f.path.write_text("x=2\n")
    f.path.chmod(0o444)
    if not os.access(f.path, os.W_OK):
        assert f.take() == "x=2\n"
        assert f.path.read_bytes() == b"" and os.access(f.path, os.W_OK)
        return
    # root ignores the mode: check as an unprivileged user, in a forked child (no exec needed)
    directory.chmod(0o777)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            assert not os.access(f.path, os.W_OK)
            ok = f.take() == "x=2\n" and f.path.read_bytes() == b"" and os.access(f.path,
                                                                                os.W_OK)
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_unwritable_file_is_read_then_replaced() -> None:
    directory = Path(tempfile.mkdtemp(prefix="ferry-outputs-"))  # reachable by another user
    try:
        _check_unwritable(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_symlink_is_refused_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("token=abc\n")
    f = OutputsFile(tmp_path / "out", "STATE_OUTPUTS")
    f.path.unlink()
    f.path.symlink_to(secret)
    with pytest.raises(OutputsError, match=r"STATE_OUTPUTS: .*not a regular file"):
        f.take()
    assert secret.read_text() == "token=abc\n"  # neither read into state nor truncated


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    f = OutputsFile(tmp_path / "out", "STATE_OUTPUTS")
    f.path.unlink()
    os.mkfifo(f.path)
    with pytest.raises(OutputsError, match="not a regular file"):
        f.take()


def test_each_step_sees_an_empty_file_and_only_writing_steps_make_diffs(tmp_path: Path) -> None:
    executor, backend, _ = make_executor(tmp_path)
    run_id = executor.create_run(workflow("""
version: "1"
nodes:
  - id: a
    steps:
      - run: echo "n@=1" >> $STATE_OUTPUTS
      - run: test ! -s "$STATE_OUTPUTS" && test ! -s "$TASK_OUTPUTS"
      - run: "true"
      - run: echo "n@=2" >> $STATE_OUTPUTS; echo "o=x" >> $TASK_OUTPUTS
      - run: test ! -s "$STATE_OUTPUTS" && test ! -s "$TASK_OUTPUTS"
"""))
    assert executor.execute(run_id, threading.Event()) == RunStatus.COMPLETED
    doc = backend.load(run_id)
    assert doc["state"] == {"n": [1, 2]}  # each append applied exactly once
    assert one(doc, "a")["outputs"] == {"o": "x"}
    outputs_diffs = [d for d in backend.history(run_id)
                     if any(op["path"].startswith("/state") for op in d.ops)]
    assert len(outputs_diffs) == 2  # steps that wrote nothing cost no diff


def test_replacing_the_outputs_file_with_a_link_fails_the_task(tmp_path: Path) -> None:
    executor, backend, _ = make_executor(tmp_path)
    (tmp_path / "secret").write_text("k=v\n")
    run_id = executor.create_run(workflow(f"""
version: "1"
nodes:
  - id: a
    steps:
      - run: rm "$STATE_OUTPUTS" && ln -s {tmp_path / "secret"} "$STATE_OUTPUTS"
"""))
    assert executor.execute(run_id, threading.Event()) == RunStatus.FAILED
    doc = backend.load(run_id)
    assert "STATE_OUTPUTS" in one(doc, "a")["error"] and "not a regular file" in \
        one(doc, "a")["error"]
    assert "state" not in doc or doc["state"] == {}


def test_a_state_value_no_process_can_receive_fails_the_step_not_the_run(tmp_path: Path) -> None:
    """A NUL byte written to state and then placed in an env var: the step fails, named."""
    executor, backend, _ = make_executor(tmp_path)
    run_id = executor.create_run(workflow(r"""
version: "1"
nodes:
  - id: a
    steps:
      - run: echo 'v="a\u0000b"' >> $STATE_OUTPUTS
      - run: echo "never"
        env: {BAD: "${{state.v}}"}
  - id: b
    steps:
      - run: "true"
"""))
    assert executor.execute(run_id, threading.Event()) == RunStatus.FAILED
    doc = backend.load(run_id)
    error = one(doc, "a")["error"]
    assert "'BAD'" in error and "NUL" in error, error
    assert one(doc, "b")["status"] == "Completed"
    assert b"never" not in backend.read_log(run_id, one(doc, "a")["id"])
