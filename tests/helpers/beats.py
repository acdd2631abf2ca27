"""Steps that prove whether an interrupted step's processes outlive it.

Each step attempt draws an id and its working processes append `<attempt> <role> <pid>` lines
to `beats` in the workspace every 50 ms until the file `release` exists. Appends (O_APPEND) are
ordered by the kernel, so the file's order is real time across processes, containers included:
if any line of one attempt follows the first line of a later attempt, two attempts of the step
ran at once.

Step kinds (`STEPS`): `quiet` (the step's shell beats), `daemon` (the step double-forks a
child that calls `setsid` and runs under `env -i`, so it carries no marker, no session and no
parent of the step; both beat), `detached` (the same without `env -i`: what the session
fallback still finds by its marker), `docker` (the quiet step inside a container),
`docker-detached` (the detached step inside a container).
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import psutil

_BEAT = 'while [ ! -e {dir}release ]; do echo "$A {role} $$" >> {dir}beats; sleep 0.05; done'

_QUIET = """A=$(cat /proc/sys/kernel/random/uuid)
{main}
"""

_DAEMON = """A=$(cat /proc/sys/kernel/random/uuid)
(setsid env -i /bin/sh -c '{daemon}' "$A" >/dev/null 2>&1 </dev/null &)
{main}
"""

_DETACHED = """A=$(cat /proc/sys/kernel/random/uuid)
(setsid /bin/sh -c '{daemon}' "$A" >/dev/null 2>&1 </dev/null &)
{main}
"""

STEPS = {"quiet": _QUIET, "daemon": _DAEMON, "detached": _DETACHED, "docker": _QUIET,
         "docker-detached": _DETACHED}


def script(kind: str, where: Path | None = None) -> str:
    """The step's shell text; `beats`/`release` in `where`, else in the working directory."""
    prefix = f"{where}/" if where is not None else ""
    return STEPS[kind].format(
        main=_BEAT.format(dir=prefix, role="main"),
        daemon=_BEAT.format(dir=prefix, role="daemon").replace("$A", "$0"))


def workflow(kind: str, image: str = "", where: Path | None = None) -> str:
    """A one-node workflow whose step is `kind` (`where`: see `script`; a Docker step gets
    `where` mounted, which the runner config must allow)."""
    runtime = ""
    if kind.startswith("docker"):
        mounts = f", mounts: ['{where}:{where}']" if where is not None else ""
        runtime = f"    runtime: {{type: docker, image: '{image}'{mounts}}}\n"
    text = "\n".join(f"          {line}" for line in script(kind, where).splitlines())
    return (f'version: "1"\nnodes:\n  - id: beat\n{runtime}    steps:\n      - name: beat\n'
            f"        run: |\n{text}\n")


@dataclass(frozen=True)
class Beat:
    """One line of the beats file."""

    attempt: str
    role: str
    pid: int


def read(workdir: Path) -> list[Beat]:
    """The beats so far, in the order they were written (a torn last line is skipped)."""
    path = workdir / "beats"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            out.append(Beat(parts[0], parts[1], int(parts[2])))
    return out


def attempts(beats: list[Beat]) -> list[str]:
    """Attempt ids in the order they first beat."""
    return list(dict.fromkeys(b.attempt for b in beats))


def overlap(beats: list[Beat]) -> list[Beat]:
    """Lines written by an attempt after a later attempt's first line (should be none)."""
    order = attempts(beats)
    first = {a: next(i for i, b in enumerate(beats) if b.attempt == a) for a in order}
    bad = []
    for i, beat in enumerate(beats):
        later = [a for a in order[order.index(beat.attempt) + 1:] if first[a] < i]
        if later:
            bad.append(beat)
    return bad


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def host_pids(beats: list[Beat], attempt: str) -> set[int]:
    """Host pids of an attempt's beating processes (container pids are namespaced: none)."""
    return {b.pid for b in beats if b.attempt == attempt and alive(b.pid)
            and _beats_here(b.pid)}


def _beats_here(pid: int) -> bool:
    try:
        return "sh" in Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return False


def kill_all(pids: set[int]) -> None:
    """Clean up after a test (escaped processes of a documented limitation)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
