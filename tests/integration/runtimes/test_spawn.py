"""runtimes.spawn: the direct fork_exec path and the Popen path start the same child."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.runtimes.spawn import FAST_SPAWN, BadEnvironment, Child, env_block, spawn

PATHS = ["fast", "popen"]


def _env(**extra: str) -> list[bytes]:
    base = {"PATH": "/usr/bin:/bin", **extra}
    return env_block({k.encode(): v.encode() for k, v in base.items()})


@pytest.fixture
def devnull() -> Iterator[int]:
    fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    yield fd
    os.close(fd)


def _run(script: str, cwd: Path, stdin: int, how: str, env: list[bytes] | None = None,
         ) -> tuple[Child, str]:
    """Spawn `sh -c script`, collect all its output, reap it."""
    read, write = os.pipe2(os.O_CLOEXEC)
    try:
        child = spawn(["/bin/sh", "-c", script], str(cwd), env or _env(), stdin, write,
                      fast=how == "fast")
    finally:
        os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    child.wait()
    return child, b"".join(chunks).decode()


def test_fast_path_is_the_one_used_on_cpython_311() -> None:
    """CI runs Python 3.11: the direct path must be the one the tests exercise there."""
    expected = sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11)
    assert expected is FAST_SPAWN


@pytest.mark.parametrize("how", PATHS)
def test_child_gets_exactly_its_env_cwd_session_and_streams(tmp_path: Path, devnull: int,
                                                             how: str) -> None:
    script = ('env | sort; pwd; echo "sid=$(cut -d" " -f6 /proc/$$/stat) pid=$$"; '
              'cat; echo to-stderr >&2')
    child, out = _run(script, tmp_path, devnull, how, _env(ONLY="this one", EMPTY=""))
    lines = out.splitlines()
    env_lines = [line for line in lines if "=" in line and not line.startswith("sid=")]
    assert [line for line in env_lines if not line.startswith(("PWD=", "SHLVL=", "_="))] == [
        "EMPTY=", "ONLY=this one", "PATH=/usr/bin:/bin"]
    assert str(tmp_path) in lines
    sid_line = next(line for line in lines if line.startswith("sid="))
    sid, pid = (part.split("=")[1] for part in sid_line.split())
    assert sid == pid == str(child.pid)  # its own session (and so its own process group)
    assert lines[-1] == "to-stderr"  # stderr on the same pipe, after stdout
    assert child.returncode == 0


@pytest.mark.parametrize("how", PATHS)
def test_no_descriptor_is_inherited_and_sigpipe_is_default(tmp_path: Path, devnull: int,
                                                           how: str) -> None:
    leaked = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(leaked, True)  # would survive exec without close_fds
    try:
        _, out = _run("ls /proc/$$/fd; grep SigIgn /proc/$$/status", tmp_path, devnull, how)
    finally:
        os.close(leaked)
    listing, status = out.split("SigIgn:")
    fds = sorted(int(x) for x in listing.split())
    assert leaked not in fds
    assert fds[:3] == [0, 1, 2]
    ignored = int(status.split()[0], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))  # Python ignores it; the child must not


@pytest.mark.parametrize("how", PATHS)
def test_exit_status_and_signal_are_reported(tmp_path: Path, devnull: int, how: str) -> None:
    assert _run("exit 3", tmp_path, devnull, how)[0].returncode == 3
    assert _run("kill -TERM $$", tmp_path, devnull, how)[0].returncode == -signal.SIGTERM


@pytest.mark.parametrize("how", PATHS)
def test_start_failures_name_what_failed(tmp_path: Path, devnull: int, how: str) -> None:
    missing = tmp_path / "no-such-program"
    with pytest.raises(FileNotFoundError) as exc:
        spawn([str(missing)], str(tmp_path), _env(), devnull, devnull, fast=how == "fast")
    assert exc.value.filename == str(missing)
    plain = tmp_path / "not-executable"
    plain.write_text("echo hi\n")
    with pytest.raises(PermissionError):
        spawn([str(plain)], str(tmp_path), _env(), devnull, devnull, fast=how == "fast")
    gone = tmp_path / "gone"
    with pytest.raises(FileNotFoundError) as exc:
        spawn(["/bin/true"], str(gone), _env(), devnull, devnull, fast=how == "fast")
    assert exc.value.filename == str(gone)


@pytest.mark.parametrize("env", [{b"A=B": b"x"}, {b"": b"x"}, {b"A": b"x\0y"}])
def test_unusable_environment_is_refused_by_name(env: dict[bytes, bytes]) -> None:
    with pytest.raises(BadEnvironment, match="cannot be passed to a process"):
        env_block(env)


@pytest.mark.parametrize("how", PATHS)
def test_relative_program_is_searched_on_the_env_path(tmp_path: Path, devnull: int,
                                                      how: str) -> None:
    read, write = os.pipe2(os.O_CLOEXEC)
    child = spawn(["sh", "-c", "echo found"], str(tmp_path), _env(), devnull, write,
                  fast=how == "fast")
    os.close(write)
    assert os.read(read, 100) == b"found\n"
    os.close(read)
    assert child.wait() == 0
