"""One executing local command (`ferry run`, `resume`, the idle path of `cancel`): its backend,
run lock, runtimes, executor, printer, cancel event and reaper (split from `runner.cli.local_run`,
which keeps the commands)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner.cli.backends import build_backend, codemod_binary, read_config
from runner.cli.live import make_printer
from runner.cli.reaper import ReaperSettings, start_reaper
from runner.cli.render import render_finished, render_paused
from runner.config import FerryConfig
from runner.document import RunStatus, utc_now
from runner.errors import FerryError, StateError, UsageError
from runner.exitcodes import for_status
from runner.paths import Paths
from runner.runtimes.base import Runtime
from runner.state.backend import StateBackend
from runner.state.runlock import RunLock

GRACE_SECONDS = 5.0


def writer_id() -> str:
    """A writer id unique to this process: two ferry processes never share a seq counter."""
    return f"local/{uuid.uuid4().hex[:12]}"


def _workdir(arg: str | None) -> Path:
    path = Path(arg).expanduser().absolute() if arg else Path.cwd()
    if not path.is_dir():
        raise UsageError(f"--workdir {path}: not a directory")
    return path


def _runtimes(workflow: dict[str, Any], config: FerryConfig,
              step_env: dict[str, str]) -> dict[str, Runtime]:
    """The runtimes this workflow needs; container engines only when a node asks for one, with
    the container policy of the config's `runner.containers` (as the daemon applies it).
    Podman's socket: `runner.containers.podman_socket` of `-c CONFIG`, else where the daemon
    looks too ($XDG_RUNTIME_DIR/podman/podman.sock, then /run/podman/podman.sock). Host steps
    get `step_env` (the allowed part of our environment), never all of it; their processes are
    tracked as `FERRY_PROCESS_TRACKING`, else `runner.process_tracking`, says."""
    from runner.cli.leftovers import tracking_from
    from runner.cli.runner_config import container_policy
    from runner.runtimes.factory import RuntimeSettings, build_runtimes, kinds_used

    settings = RuntimeSettings(grace_seconds=GRACE_SECONDS,
                               policy=container_policy(config.runner.containers),
                               podman_socket=config.runner.containers.podman_socket,
                               xdg_runtime_dir=os.environ.get("XDG_RUNTIME_DIR"),
                               tracking=tracking_from(os.environ,
                                                      config.runner.process_tracking))
    return build_runtimes(settings, step_env, kinds_used(workflow))


def _secrets(args: argparse.Namespace) -> dict[str, str]:
    """`--secrets-file` then `--secret` (which wins), every value checked."""
    from runner.secrets.values import parse_assignments, read_dotenv

    found: dict[str, str] = {}
    if getattr(args, "secrets_file", None):
        found.update(read_dotenv(Path(args.secrets_file)))
    found.update(parse_assignments(getattr(args, "secret", None) or []))
    return found


class Session:
    """One executing command: backend, lock, executor, printer, the cancel event, and the
    reaper that ends this process's steps if it is killed (`runner.cli.reaper`)."""

    def __init__(self, args: argparse.Namespace, workflow_dict: dict[str, Any], *,
                 secret_params: dict[str, str] | None = None) -> None:
        from runner.cli.isolation import known_tokens, step_env, undumpable
        from runner.engine.executor import Executor, ExecutorSettings

        undumpable()  # a step of our uid cannot read our environment or memory
        self.paths = Paths.from_env(os.environ)
        config_path = getattr(args, "config", None)
        config = read_config(config_path, os.environ)
        # Started first and on its own thread: it is running long before the first step.
        self.reaper = start_reaper(ReaperSettings(
            self.paths.work_dir, GRACE_SECONDS,
            podman_socket=config.runner.containers.podman_socket,
            xdg_runtime_dir=os.environ.get("XDG_RUNTIME_DIR")))
        env = step_env(config, os.environ)
        self.backend: StateBackend = build_backend(config, self.paths, config_path or "config")
        self.json = bool(getattr(args, "json", False))
        # With --json, stdout carries JSON Lines only; the human lines are not printed.
        # On a terminal, a live status footer below the same lines (runner.cli.live).
        self.printer = make_printer(sys.stdout, os.environ, json_lines=self.json)
        self.cancel = threading.Event()
        self.runtimes = _runtimes(workflow_dict, config, env)
        settings = ExecutorSettings(
            writer=writer_id(),
            max_parallel=getattr(args, "max_parallel", None) or os.cpu_count() or 2,
            workspace=_workdir(getattr(args, "workdir", None)),
            control_root=self.paths.work_dir, env=env, secrets=_secrets(args),
            secret_params=secret_params or {}, masked=known_tokens(config, os.environ),
            codemod_bin=codemod_binary(workflow_dict, config, os.environ))
        self.executor = Executor(self.backend, self.runtimes, settings, events=self.printer,
                                 clock=utc_now)
        self.lock: RunLock | None = None

    def say(self, *lines: str) -> None:
        """Human lines (suppressed with --json)."""
        if not self.json:
            self.printer.write(list(lines))

    def take_lock(self, run_id: str) -> None:
        """Refuse to execute a run that another live process is executing."""
        lock = RunLock(self.paths.data_dir / "locks", run_id)
        # Another command may hold it for a moment to probe it (`logs -f`, `cancel`).
        deadline = time.monotonic() + 0.5
        while not lock.acquire() and time.monotonic() < deadline:
            threading.Event().wait(0.02)
        if not lock.held:
            pid = lock.holder_pid()
            who = f" (pid {pid})" if pid else ""
            raise UsageError(f"run {run_id} is being executed by another ferry process{who}")
        self.lock = lock
        self.reap(run_id)

    def reap(self, run_id: str) -> None:
        """End the step processes a dead executor of this run left running (its tasks run
        again, never alongside them), and remove the containers dead local runs left (a
        `ferry run` killed mid-task); only for the container engines this workflow uses.
        Engine down: nothing to do, quietly."""
        from runner.cli.leftovers import end_leftover_processes
        from runner.cli.local_reap import reap_leftovers
        from runner.paths import ledger_files

        def warn(text: str) -> None:
            print(f"ferry: warning: {text}", file=sys.stderr, flush=True)

        def say(text: str) -> None:
            print(f"ferry: {text}", file=sys.stderr, flush=True)

        end_leftover_processes(ledger_files(self.paths.work_dir, run_id), GRACE_SECONDS,
                               say=say, warn=warn)

        removed = reap_leftovers(self.runtimes, self.paths.data_dir / "locks", own_run=run_id,
                                 warn=warn)
        if removed:
            print(f"ferry: removed {removed} leftover container{'s' if removed > 1 else ''} "
                  "of runs no ferry process is executing", file=sys.stderr, flush=True)

    def execute(self, run_id: str) -> int:
        """Execute until the run stops; print the closing block; the exit code."""
        self.printer.begin(self.backend.load(run_id))
        self.reaper.wait_started()  # a SIGKILL from here on leaves no step running
        try:
            with cancel_on_signals(self.cancel):
                status = self.executor.execute(run_id, self.cancel)
        finally:
            self.printer.end()
        doc = self.backend.load(run_id)
        if self.json:
            self.printer.write([json.dumps({"kind": "run", "run": doc}, ensure_ascii=False)])
        elif str(status) == RunStatus.AWAITING_TRIGGER.value:
            self.say(*render_paused(doc, utc_now(), again=self.resumed))
        else:
            self.say(*render_finished(doc, utc_now()))
        return for_status(str(status))

    resumed = False

    def close(self) -> None:
        """Stop the live view; release the lock and the backend. A backend that reports to a
        control plane raises here when records could not be delivered (exit 6, one line);
        while another error is already on its way out, that one wins and this is printed."""
        self.printer.end()
        if self.lock is not None:
            self.lock.release()
        in_flight = sys.exc_info()[1]
        if isinstance(in_flight, StateError):  # e.g. a full disk: the server learns it too
            from runner.state.reporting import ReportingBackend

            if isinstance(self.backend, ReportingBackend):
                for line in self.backend.fail_open_runs(str(in_flight)):
                    print(f"ferry: error: {line}", file=sys.stderr)
        try:
            self.backend.close()
        except FerryError as exc:
            if in_flight is None:
                raise
            print(f"ferry: error: {exc}", file=sys.stderr)


@contextmanager
def cancel_on_signals(cancel: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set `cancel`: the executor terminates the tasks and ends the run Canceled.
    The handler only sets the event (the rule for every signal handler in Ferry)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: object) -> None:
        cancel.set()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
