"""Start a host step's process: `spawn(argv, cwd, env_block(env), stdin, output)` -> a `Child`.

The child gets: its own session (and so its own process group), `cwd`, exactly `env`, `stdin`,
stdout and stderr both on `output`, no other inherited descriptor, and SIGPIPE/SIGXFSZ back at
their defaults. A program that cannot be started raises `OSError` naming it (or naming `cwd`
when that is what failed); an unusable environment raises `BadEnvironment` before anything
starts.

On CPython 3.11 this calls `_posixsubprocess.fork_exec`, the primitive `subprocess.Popen` is
built on (and that `multiprocessing` calls directly), with the same arguments Popen would pass.
Popen spends ~150 us of Python per call on a step's environment (two `os.fsencode` per
variable) and on its own bookkeeping, a sixth of a short step (bench/engine_steps.py). The
private signature changes between CPython versions, so any other interpreter or version, or
`fast=False`, goes through `subprocess.Popen` with the same arguments and the same result; the
runtime tests run both paths.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from runner.errors import FerryError


def _find_fork_exec() -> Callable[..., int] | None:
    try:
        module = importlib.import_module("_posixsubprocess")
    except ImportError:  # pragma: no cover - not CPython on POSIX
        return None
    found: Callable[..., int] | None = getattr(module, "fork_exec", None)
    return found


_fork_exec = _find_fork_exec()

FAST_SPAWN = (_fork_exec is not None and sys.implementation.name == "cpython"
              and sys.version_info[:2] == (3, 11))
"""Whether `spawn` can use the direct path here (the fork_exec signature it was written for)."""

_ERRPIPE_LIMIT = 50000


class BadEnvironment(FerryError, ValueError):
    """A variable name is empty or holds '=' or NUL, or a value holds NUL: no process can get it."""


class Child(Protocol):
    """What the runtime needs of a started process (`subprocess.Popen` has it too)."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None:
        """The exit status if the process has ended (reaping it), else None."""
        ...

    def wait(self) -> int:
        """Wait for the process to end, reap it, and return its exit status."""
        ...


def env_block(env: Mapping[bytes, bytes]) -> list[bytes]:
    """`KEY=VALUE` entries for execve; `BadEnvironment` names the first unusable variable."""
    block = []
    for key, value in env.items():
        if not key or b"=" in key or b"\0" in key:
            problem = "its name is empty or holds '=' or a NUL byte"
        elif b"\0" in value:
            problem = "its value holds a NUL byte"
        else:
            block.append(key + b"=" + value)
            continue
        raise BadEnvironment(f"environment variable {key.decode(errors='replace')!r} cannot be "
                             f"passed to a process: {problem}")
    return block


@dataclass(frozen=True)
class Credentials:
    """The user a child runs as (set by a root runner): uid, gid and exactly these groups."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()


def spawn(argv: Sequence[str], cwd: str, env: list[bytes], stdin: int, output: int, *,
          fast: bool = True, creds: Credentials | None = None) -> Child:
    """Start `argv` as described in the module docstring; `env` is an `env_block`; with
    `creds`, as that user (its groups replace the runner's)."""
    program = os.fsencode(argv[0]) if argv else b""
    if not (fast and FAST_SPAWN and os.path.dirname(program)):
        mapping = dict(entry.split(b"=", 1) for entry in env)
        who: dict[str, Any] = {}
        if creds is not None:
            who = {"user": creds.uid, "group": creds.gid, "extra_groups": list(creds.groups)}
        return subprocess.Popen(list(argv), cwd=cwd, env=mapping, stdin=stdin, stdout=output,
                                stderr=output, start_new_session=True, close_fds=True, **who)
    return _DirectChild(argv, program, cwd, env, stdin, output, creds)


class _DirectChild:
    """A child started through fork_exec; exec errors come back through a CLOEXEC pipe."""

    def __init__(self, argv: Sequence[str], program: bytes, cwd: str, block: list[bytes],
                 stdin: int, output: int, creds: Credentials | None = None) -> None:
        self.returncode: int | None = None
        errpipe_read, errpipe_write = _errpipe()
        try:
            try:
                assert _fork_exec is not None
                # The argument list of CPython 3.11's subprocess.Popen._execute_child; an
                # empty group list (not None) drops the runner's supplementary groups.
                gid, groups, uid = ((creds.gid, list(creds.groups), creds.uid) if creds
                                    else (None, None, None))
                self.pid = _fork_exec(
                    list(argv), (program,), True, (errpipe_write,), cwd, block,
                    stdin, -1, -1, output, -1, output, errpipe_read, errpipe_write,
                    True, True, -1, gid, groups, uid, -1, None, True)
            finally:
                os.close(errpipe_write)
            failure = _read_all(errpipe_read)
        finally:
            os.close(errpipe_read)
        if failure:
            self.wait()
            raise _child_error(failure, program, cwd)

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): as Popen does
                self.returncode = 0
            else:
                if pid == self.pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                self.returncode = 0
            else:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def _errpipe() -> tuple[int, int]:
    """A CLOEXEC pipe whose write end is not 0, 1 or 2 (the child's dup2 targets)."""
    read, write = os.pipe2(os.O_CLOEXEC)
    low = []
    while write < 3:
        low.append(write)
        write = os.dup(write)  # os.dup gives a non-inheritable descriptor
    for fd in low:
        os.close(fd)
    return read, write


def _read_all(fd: int) -> bytes:
    data = b""
    while part := os.read(fd, _ERRPIPE_LIMIT):
        data += part
        if len(data) > _ERRPIPE_LIMIT:
            break
    return data


def _child_error(failure: bytes, program: bytes, cwd: str) -> Exception:
    """The exception the child reported (format `Name:hex errno:detail`), as Popen builds it."""
    try:
        name, hex_errno, detail = failure.split(b":", 2)
        errno_num = int(hex_errno, 16)
    except ValueError:
        return subprocess.SubprocessError(f"bad exception data from child: {failure!r}")
    if name == b"OSError" and errno_num:
        where = cwd if detail == b"noexec" else os.fsdecode(program)
        return OSError(errno_num, os.strerror(errno_num), where)
    return subprocess.SubprocessError(detail.decode(errors="replace"))
