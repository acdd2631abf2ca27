"""The executing local commands: `run`, `resume` and `cancel` (split from `runner.cli.local`,
which keeps the parser and the read-only commands)."""

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
from typing import TYPE_CHECKING, Any

from runner.cli.args import parse_params
from runner.cli.backends import build_backend, codemod_binary, read_config, resolve_task
from runner.cli.live import LinePrinter, make_printer
from runner.cli.render import render_finished, render_paused, stamp
from runner.config import FerryConfig
from runner.document import TERMINAL_RUN, RunStatus, TaskStatus, task_label, utc_now
from runner.errors import FerryError, StateError, UsageError, WorkflowInvalid
from runner.exitcodes import ExitCode, for_status
from runner.paths import Paths
from runner.runtimes.base import Runtime
from runner.state.backend import StateBackend
from runner.state.runlock import RunLock

if TYPE_CHECKING:
    from runner.workflow.model import Workflow
    from runner.workflow.params import CheckedParams
    from runner.workflow.validate import Report

CANCEL_WAIT_SECONDS = 30.0
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
    from runner.cli.daemon import container_policy
    from runner.cli.leftovers import tracking_from
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


class _Session:
    """One executing command: backend, lock, executor, printer and the cancel event."""

    def __init__(self, args: argparse.Namespace, workflow_dict: dict[str, Any], *,
                 secret_params: dict[str, str] | None = None) -> None:
        from runner.cli.isolation import known_tokens, step_env, undumpable
        from runner.engine.executor import Executor, ExecutorSettings

        undumpable()  # a step of our uid cannot read our environment or memory
        self.paths = Paths.from_env(os.environ)
        config_path = getattr(args, "config", None)
        config = read_config(config_path, os.environ)
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
        try:
            with _cancel_on_signals(self.cancel):
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
def _cancel_on_signals(cancel: threading.Event) -> Iterator[None]:
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


def _load_workflow(path_text: str, strict: bool = False) -> tuple[Report, Path]:
    from runner.workflow.validate import load_report

    path = Path(path_text)
    if not path.exists():
        raise UsageError(f"workflow file not found: {path}")
    if not path.is_file():
        raise UsageError(f"workflow path is not a file: {path}")
    return load_report(path, strict=strict), path


def _print_invalid(exc: WorkflowInvalid) -> int:
    print("✗ Workflow definition is invalid", file=sys.stderr)
    for problem in exc.problems:
        print(problem.render(), file=sys.stderr)
    return ExitCode.USAGE


def print_warnings(lines: list[str]) -> None:
    """What `ferry validate` warns about, on stderr (stdout may carry JSON Lines)."""
    for line in lines:
        print(f"ferry: {line}", file=sys.stderr, flush=True)


def checked_params(workflow: Workflow, given: dict[str, str]) -> CheckedParams | None:
    """The run's params checked against `params.schema`; None (every problem printed, one line
    each) when they do not fit, before anything starts."""
    from runner.workflow.params import check_params

    checked = check_params(workflow, given)
    for problem in checked.problems:
        print(f"ferry: error: {problem}", file=sys.stderr)
    return None if checked.problems else checked


def run_workflow(args: argparse.Namespace) -> int:
    """`ferry run -w FILE`: create a run and execute it."""
    given = parse_params(args.param)
    try:
        report, path = _load_workflow(args.workflow, strict=bool(getattr(args, "strict", False)))
    except WorkflowInvalid as exc:
        return _print_invalid(exc)
    workflow = report.workflow
    assert workflow is not None
    warnings = [p.render() for p in report.warnings]
    print_warnings(warnings)
    checked = checked_params(workflow, given)
    if checked is None:
        return ExitCode.USAGE
    from runner.secrets.values import check_value

    workflow_dict = workflow.model_dump(mode="json", by_alias=True, exclude_none=True)
    hidden = {k: str(v) for k, v in checked.values.items() if k in checked.secret}
    for name, value in hidden.items():
        check_value(name, value, "--param (declared secret)")
    session = _Session(args, workflow_dict, secret_params=hidden)
    try:
        if args.config:
            session.say(f"Using configuration from {args.config}")
        session.say("Executing workflow...")
        run_id = session.executor.create_run(workflow, params=checked.masked(),
                                             name=workflow.name or path.stem,
                                             workflow_path=str(path),
                                             bundle_path=str(path.parent.absolute()),
                                             warnings=warnings,
                                             dry_run=bool(getattr(args, "dry_run", False)))
        session.take_lock(run_id)
        return session.execute(run_id)
    finally:
        session.close()


def _triggerable(doc: dict[str, Any], refs: list[str]) -> list[str]:
    """Check every requested task before touching anything: all or nothing."""
    ids: list[str] = []
    for ref in refs:
        task = resolve_task(doc, ref)
        if task["status"] != TaskStatus.AWAITING_TRIGGER.value:
            raise UsageError(f"task {task['id']} ({task_label(doc, task)}) is {task['status']}, "
                             "not AwaitingTrigger: only waiting tasks can be triggered")
        if task["id"] not in ids:
            ids.append(task["id"])
    return ids


def resume_run(args: argparse.Namespace) -> int:
    """`ferry resume -i RUN`: trigger tasks (or re-run failed ones), then continue the run."""
    retry = bool(getattr(args, "retry_failed", False))
    if args.task and args.trigger_all:
        raise UsageError("give either -t TASK or --trigger-all, not both")
    if retry and (args.task or args.trigger_all):
        raise UsageError("--retry-failed re-runs a Failed run; it takes no -t or --trigger-all")
    paths = Paths.from_env(os.environ)
    probe = build_backend(read_config(args.config, os.environ), paths, args.config or "config")
    try:
        run_id = probe.resolve_run_id(args.id)
        doc = probe.load(run_id)
    finally:
        probe.close()
    if retry and doc["status"] != RunStatus.FAILED.value:
        raise UsageError(f"run {run_id} is {doc['status']}: --retry-failed re-runs the failed "
                         "and blocked tasks of a Failed run")
    if not retry and doc["status"] in TERMINAL_RUN:
        hint = (" (use --retry-failed to run its failed tasks again)"
                if doc["status"] == RunStatus.FAILED.value else "")
        raise UsageError(f"run {run_id} is already {doc['status']}: nothing to resume{hint}")
    ids = _triggerable(doc, args.task)
    if args.trigger_all and not any(t["status"] == TaskStatus.AWAITING_TRIGGER.value
                                    for t in doc["tasks"].values()):
        raise UsageError(f"run {run_id} has no task awaiting a trigger")
    hidden = _resumed_secret_params(args, doc)
    print_warnings(list(doc.get("warnings") or []))
    session = _Session(args, doc.get("workflow") or {}, secret_params=hidden)
    session.resumed = True
    try:
        session.take_lock(run_id)
        session.say(f"Resuming workflow {run_id}...")
        if retry:
            reset = session.executor.retry_failed(run_id)
            session.say(f"{stamp(utc_now())} Running {len(reset)} failed or blocked "
                        f"task{'s' if len(reset) != 1 else ''} again")
        elif args.trigger_all:
            waiting = [t for t in doc["tasks"].values()
                       if t["status"] == TaskStatus.AWAITING_TRIGGER.value]
            session.say(f"{stamp(utc_now())} Triggering all awaiting tasks:",
                        *(f"  - {t['id']} ({task_label(doc, t)})" for t in waiting))
            session.executor.trigger(run_id, None)
        elif ids:
            session.executor.trigger(run_id, ids)
        return session.execute(run_id)
    finally:
        session.close()


def _resumed_secret_params(args: argparse.Namespace, doc: dict[str, Any]) -> dict[str, str]:
    """`--param` on resume: only for params declared secret, whose values the run document
    never held (it shows `***`); a run's other params are fixed when it is created. A secret
    not given again is announced: steps that read it fail naming it."""
    from runner.secrets.params import MASKED_PARAM
    from runner.secrets.values import check_value

    given = parse_params(getattr(args, "param", None) or [])
    hidden = {k for k, v in (doc.get("params") or {}).items() if v == MASKED_PARAM}
    for name, value in given.items():
        if name not in hidden:
            raise UsageError(f"--param {name}: only params declared secret can be given again "
                             "on resume (the run keeps the others it was created with)")
        check_value(name, value, "--param (declared secret)")
    missing = sorted(hidden - set(given))
    if missing:
        print_warnings([f"warning: secret params are not stored: {', '.join(missing)}; steps "
                        "that read them fail (give them again with --param NAME=VALUE)"])
    return given


def cancel_run(args: argparse.Namespace) -> int:
    """`ferry cancel -i RUN`: stop the process executing it, or cancel it directly."""
    paths = Paths.from_env(os.environ)
    backend = build_backend(read_config(args.config, os.environ), paths,
                            args.config or "config")
    try:
        run_id = backend.resolve_run_id(args.id)
        doc = backend.load(run_id)
        if doc["status"] in TERMINAL_RUN:
            raise UsageError(f"run {run_id} is already {doc['status']}: nothing to cancel")
        print(f"Canceling workflow run {run_id}...", flush=True)
        lock = RunLock(paths.data_dir / "locks", run_id)
        if _running_elsewhere(backend, doc) or not lock.acquire():
            return _cancel_running(backend, doc)
        lock.release()
        return _cancel_idle(args, doc)
    finally:
        backend.close()


def _running_elsewhere(backend: StateBackend, doc: dict[str, Any]) -> bool:
    """On a shared backend (`database`): a live process on another machine runs a task of
    the run (our run lock cannot see it)."""
    if not backend.shared:
        return False
    writers = {t.get("writer") for t in (doc.get("tasks") or {}).values()
               if t.get("status") == "Running" and isinstance(t.get("writer"), str)}
    return any(backend.alive(w) for w in writers)


def _cancel_idle(args: argparse.Namespace, doc: dict[str, Any]) -> int:
    """Nobody executes the run (paused, or its process died): end it Canceled ourselves."""
    session = _Session(args, doc.get("workflow") or {})
    try:
        session.take_lock(doc["id"])
        session.executor.request_cancel(doc["id"])
        session.cancel.set()
        status = session.executor.execute(doc["id"], session.cancel)
    finally:
        session.close()
    print(f"{stamp(utc_now())} Workflow run canceled successfully", flush=True)
    return ExitCode.OK if str(status) == RunStatus.CANCELED.value else ExitCode.FAILED


def _cancel_running(backend: StateBackend, doc: dict[str, Any]) -> int:
    """Ask the executing process to stop and follow the run until it ends."""
    from runner.engine.executor import Executor, ExecutorSettings

    run_id = doc["id"]
    writer = writer_id()
    cursor, _ = backend.position(run_id, writer)
    settings = ExecutorSettings(writer=writer, max_parallel=1,
                                control_root=Paths.from_env(os.environ).work_dir)
    executor = Executor(backend, {}, settings, events=LinePrinter(sys.stdout), clock=utc_now)
    executor.request_cancel(run_id)
    print(f"{stamp(utc_now())} Sending termination signal to running tasks", flush=True)
    running = {tid for tid, t in doc["tasks"].items() if t["status"] == "Running"}
    waiter = threading.Event()
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while time.monotonic() < deadline:
        diffs, cursor = backend.changes_since(run_id, cursor)
        if diffs:
            current = backend.load(run_id)
            for tid in sorted(running):
                task = current["tasks"].get(tid)
                if task and task["status"] != "Running":
                    running.discard(tid)
                    print(f"{stamp(utc_now())} Task {tid} ({task_label(current, task)}): "
                          "Terminated", flush=True)
            if current["status"] in TERMINAL_RUN:
                print(f"{stamp(utc_now())} Workflow run canceled successfully"
                      if current["status"] == RunStatus.CANCELED.value else
                      f"{stamp(utc_now())} Workflow run ended {current['status']}", flush=True)
                return ExitCode.OK
        waiter.wait(0.05)
    print(f"ferry: error: run {run_id} did not stop within {CANCEL_WAIT_SECONDS:g}s; "
          "its process may be stuck", file=sys.stderr)
    return ExitCode.FAILED
