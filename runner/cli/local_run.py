"""The executing local commands: `run`, `resume` and `cancel` (split from `runner.cli.local`,
which keeps the parser and the read-only commands)."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.cli.args import parse_params
from runner.cli.backends import build_backend, read_config, resolve_task
from runner.cli.live import LinePrinter
from runner.cli.local_session import Session, writer_id
from runner.cli.render import stamp
from runner.document import TERMINAL_RUN, RunStatus, TaskStatus, task_label, utc_now
from runner.errors import UsageError, WorkflowInvalid
from runner.exitcodes import ExitCode
from runner.paths import Paths
from runner.state.backend import StateBackend
from runner.state.runlock import RunLock

if TYPE_CHECKING:
    from runner.workflow.model import Workflow
    from runner.workflow.params import CheckedParams
    from runner.workflow.validate import Report

CANCEL_WAIT_SECONDS = 30.0


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
    session = Session(args, workflow_dict, secret_params=hidden)
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
    session = Session(args, doc.get("workflow") or {}, secret_params=hidden)
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
    session = Session(args, doc.get("workflow") or {})
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
