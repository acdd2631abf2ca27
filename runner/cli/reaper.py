"""The reaper: a watchdog process per runner that ends its steps when the runner dies.

A runner (`ferry daemon`, `ferry run`, `ferry resume`) killed with SIGKILL leaves its running
steps behind; the run's lease expires and another runner, on another machine, may start them
again while they still run. So each runner starts one small process at start-up, in its own
session (a terminal's SIGINT to the foreground group or `kill -- -PGID` of the runner does not
reach it; it ignores SIGINT, SIGTERM and SIGHUP anyway), holding the read end of a pipe whose
write end only the runner holds (close-on-exec, and every spawn closes other descriptors:
steps, containers and git never inherit it). However the runner ends, the kernel closes the
write end and the reaper reads end-of-file. It then ends what the runner's task ledgers
(`runner.runtimes.ledger`) record, for the ledgers this very runner wrote (its pid and start
time): the task's cgroup or step processes (SIGTERM, the runner's grace, SIGKILL) and its
containers (`rm -f`), one line per task on the runner's stderr (the daemon's log, in its
format), then it removes those ledgers and exits. After a normal exit the runner's tasks have
ended and removed their ledgers: the reaper finds nothing and exits without a word.

What still escapes it: the reaper itself killed with SIGKILL (`kill -9` of both, the OOM
killer), and a machine that stops (its steps stop with it). The next Ferry process on this home
then ends what is left (`runner.cli.leftovers`) before the task runs here again.
"""

from __future__ import annotations

import os
import signal
import site
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

MODULE = "runner.cli.reaper"
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH",
               "DOCKER_CONFIG")
"""What the reaper keeps of the runner's environment: how to reach a container engine, nothing
secret (its environment is readable by processes of its uid)."""


@dataclass(frozen=True)
class ReaperSettings:
    """What the reaper needs to end a runner's tasks."""

    work_dir: Path
    grace: float
    log_format: str = "cli"
    """How it reports: `cli` (`ferry: ...` lines), or the daemon's `text` / `json`."""
    podman_socket: str | None = None
    xdg_runtime_dir: str | None = None


_STARTED: dict[Path, Reaper] = {}
_STARTED_LOCK = threading.Lock()


def start_reaper(settings: ReaperSettings) -> Reaper:
    """This process's reaper for `settings.work_dir`, started now unless it runs already (one
    per process and home: it ends whatever this process's tasks there left)."""
    with _STARTED_LOCK:
        found = _STARTED.get(settings.work_dir)
        if found is None:
            found = _STARTED[settings.work_dir] = Reaper(settings)
        return found


class Reaper:
    """The runner's side: starts the reaper (on a thread: the run does not wait for it) and
    keeps the pipe's write end open until this process ends."""

    def __init__(self, settings: ReaperSettings, *, warn: TextIO | None = None) -> None:
        self.settings = settings
        self.pid: int | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self.error = ""
        self._warn = warn if warn is not None else sys.stderr
        self._started = threading.Event()
        self._read, self._write = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._spawn, name="ferry-reaper-start",
                                        daemon=True)
        self._thread.start()

    def argv(self) -> list[str]:
        """The reaper's command line (the runner's interpreter; `ps` shows whose it is)."""
        s = self.settings
        argv = [sys.executable, "-m", MODULE, "--owner", str(os.getpid()),
                "--owner-start", str(start_ticks(os.getpid())), "--fd", str(self._read),
                "--work-dir", str(s.work_dir), "--grace", f"{s.grace:g}",
                "--log-format", s.log_format]
        if s.podman_socket:
            argv += ["--podman-socket", s.podman_socket]
        if s.xdg_runtime_dir:
            argv += ["--xdg-runtime-dir", s.xdg_runtime_dir]
        return argv

    def _spawn(self) -> None:
        try:
            child = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, pass_fds=(self._read,),
                                     start_new_session=True, cwd="/", env=_environment())
            self.pid = child.pid
            self._child = child  # never waited for: it outlives this process by design
        except OSError as exc:
            self.error = str(exc)
            print(f"ferry: warning: cannot start the reaper ({exc}): if this process is "
                  "killed with SIGKILL, its running steps go on", file=self._warn, flush=True)
        finally:
            os.close(self._read)
            self._started.set()

    def wait_started(self, timeout: float = 10.0) -> bool:
        """Wait until the reaper runs (before the first step starts); False if it could not
        be started."""
        self._started.wait(timeout)
        return self.pid is not None


def start_ticks(pid: int) -> int:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:  # no such process any more: no start time to match
        return 0
    return int(raw[raw.rindex(b")") + 2:].split()[19])


def _environment() -> dict[str, str]:
    """The reaper's environment: what reaches the engines, and the runner's own code."""
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    root = str(Path(__file__).resolve().parents[2])
    installed = {str(Path(p).resolve()) for p in site.getsitepackages()}
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in installed and root not in path:
        path.insert(0, root)  # run from a checkout: the reaper imports the same `runner`
    if path:
        env["PYTHONPATH"] = os.pathsep.join(path)
    return env


def main(argv: list[str] | None = None) -> int:
    """The reaper process: wait for the runner to end, then end what it left running."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    import argparse

    p = argparse.ArgumentParser(prog="ferry-reaper")
    p.add_argument("--owner", type=int, required=True)
    p.add_argument("--owner-start", type=int, required=True)
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--work-dir", type=Path, required=True)
    p.add_argument("--grace", type=float, default=5.0)
    p.add_argument("--log-format", choices=("cli", "text", "json"), default="cli")
    p.add_argument("--podman-socket")
    p.add_argument("--xdg-runtime-dir")
    args = p.parse_args(argv)
    while True:  # the runner never writes: any byte is noise, end-of-file is its end
        try:
            if not os.read(args.fd, 4096):
                break
        except InterruptedError:  # a signal we ignore interrupted the read: read on
            continue
    os.close(args.fd)
    # After a normal exit there is no ledger left: exit before importing anything more (a
    # caller reading the runner's stderr waits for this process too).
    if next(args.work_dir.glob("*/tasks/*.procs"), None) is None:
        return 0
    from runner.cli.reaper_work import reap

    return reap(args.work_dir, args.owner, args.owner_start, grace=args.grace,
                log_format=args.log_format, podman_socket=args.podman_socket,
                xdg_runtime_dir=args.xdg_runtime_dir)


if __name__ == "__main__":
    raise SystemExit(main())
