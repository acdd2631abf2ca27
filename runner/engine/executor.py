"""The Executor: creates runs, executes them with the configured runtimes, triggers, cancels.

    Executor(backend, runtimes, ExecutorSettings(...), *, events=None, clock=utc_now)
    .create_run(workflow, *, params, name=None, workflow_path=None) -> run id
    .execute(run_id, cancel: threading.Event) -> RunStatus   (Completed/Failed/AwaitingTrigger/
                                                              Canceled; never hangs)
    .trigger(run_id, task_ids | None) -> triggered task ids   (UsageError for a task that is
                                                              not AwaitingTrigger)
    .request_cancel(run_id)

- `runtimes` maps a runtime type ("direct", "docker", "podman") to a `Runtime`; the runtimes
  own the SIGTERM -> grace -> SIGKILL of a step's processes.
- `writer` must be unique per process (e.g. `local/<random>` or `<runner_id>/a<attempt>`): see
  `runner.engine.runstore`. Seq numbers continue from the writer's last diff in the run.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.document import (
    TERMINAL_RUN,
    RunStatus,
    TaskStatus,
    new_run,
    retry_failed_ops,
    run_field_op,
    task_field_op,
    task_label,
    utc_now,
)
from runner.engine import events as ev
from runner.engine.patches import PatchKeeper
from runner.engine.run_loop import RunLoop
from runner.engine.runstore import RunStore
from runner.engine.scheduler import plan
from runner.engine.state_schema import state_schema
from runner.engine.task_patches import TaskPatchKeeper
from runner.engine.task_runner import TaskRunner
from runner.engine.task_setup import TaskSetup
from runner.errors import UsageError
from runner.paths import control_dir_under
from runner.runtimes.base import Runtime
from runner.secrets.masker import Masker
from runner.state.backend import StateBackend
from runner.workflow.graph import upstream
from runner.workflow.model import Workflow


def ancestors_of(workflow: Workflow) -> dict[str, frozenset[str]]:
    """Every node's transitive dependencies (whose outputs its expressions may read): the same
    `upstream` sets validation checks `tasks.<node>` references against."""
    deps = {n.id: n.depends_on for n in workflow.nodes}
    # Validation refuses cycles; were one here, a node must still not be its own ancestor.
    return {n.id: frozenset(upstream(n.id, deps) - {n.id}) for n in workflow.nodes}


def default_control_root() -> Path:
    """Where task control dirs go when no data dir is configured (tests, embedding)."""
    return Path(tempfile.gettempdir()) / f"ferry-work-{os.getuid()}"


@dataclass(frozen=True)
class ExecutorSettings:
    """How one executor runs tasks."""

    writer: str = "local"
    """Unique per process: the (writer, seq) pair makes every diff idempotent."""
    max_parallel: int = field(default_factory=lambda: os.cpu_count() or 1)
    workspace: Path = field(default_factory=Path.cwd)
    """Every task's working directory."""
    control_root: Path = field(default_factory=default_control_root)
    """Task control dirs (step scripts, outputs files) live under `<root>/<run>/tasks/<task>`
    and are removed when the task ends."""
    env: Mapping[str, str] = field(default_factory=dict)
    """The environment `${{env.NAME}}` reads."""
    runner_id: str = "local"
    """Passed to runtimes in `TaskSpec` (container labels)."""
    secrets: Mapping[str, str] = field(default_factory=dict)
    """What `${{secrets.NAME}}` reads; every value is masked in output, errors and outputs."""
    secret_params: Mapping[str, str] = field(default_factory=dict)
    """Values of the params the workflow declares secret (the document holds `***`)."""
    bundle_dir: Path | None = None
    """The workflow file's directory (steps' CODEMOD_PATH); None: the run document's
    `bundle_path`, else the workspace."""
    masked: Sequence[str] = ()
    """More values masked in all output (the runner's tokens), not readable as secrets."""
    step_traverse: bool = False
    """Task control dirs are made 0711 so that an unprivileged step user (a root runner's)
    can reach its files without listing or adding any."""
    codemod_bin: Path | None = None
    """The Codemod CLI that runs codemod steps (None: they fail saying how to install it)."""
    checkout: bool = False
    """The workspace is a fresh checkout of a commit (a claimed run's): the base of the run's
    patches is every file in it, as a distributed task's is."""


class Executor:
    """Runs workflow runs stored in a `StateBackend`, one diff per change."""

    def __init__(self, backend: StateBackend, runtimes: Mapping[str, Runtime],
                 settings: ExecutorSettings | None = None, *,
                 events: ev.EventSink | None = None, clock: Any = utc_now) -> None:
        settings = settings or ExecutorSettings()
        self.backend = backend
        self.runtimes = dict(runtimes)
        self.settings = settings
        self.writer = settings.writer
        self.max_parallel = max(1, settings.max_parallel)
        self.workspace = settings.workspace.absolute()
        self.control_root = settings.control_root
        self.sink: ev.EventSink = events or ev.NullSink()
        self.clock = clock
        self.env = dict(settings.env)
        self.runner_id = settings.runner_id
        self.masker = Masker([*settings.secrets.values(), *settings.secret_params.values(),
                              *settings.masked])
        self._emit_lock = threading.Lock()
        self._active: dict[str, RunStore] = {}
        self._active_lock = threading.Lock()

    def emit(self, event: ev.Event) -> None:
        """Hand an event to the sink, one at a time; a failing sink never stops a run."""
        # A sink that raises (a closed pipe, a render bug) must not break the run.
        with self._emit_lock, contextlib.suppress(Exception):
            self.sink.emit(event)

    def create_run(self, workflow: Workflow, *, params: Mapping[str, Any] | None = None,
                   name: str | None = None, workflow_path: str | None = None,
                   bundle_path: str | None = None, warnings: list[str] | None = None,
                   dry_run: bool = False) -> str:
        """Store a new Pending run of `workflow` and return its id (tasks appear on execute).
        `bundle_path`: the workflow file's directory, the steps' CODEMOD_PATH; `warnings`: what
        validation warned about (kept with the run, shown by `status`); `dry_run`: codemod
        steps report what they would change and write nothing (the CLI's `--dry-run`)."""
        # Without the unset optional fields (None), as the control plane stores it: the same
        # document shape local and remote, and a quarter of the bytes for every snapshot.
        raw = workflow.model_dump(mode="json", by_alias=True, exclude_none=True)
        doc = new_run(raw, name=name or workflow.name or _stem(workflow_path) or "workflow",
                      params=dict(params or {}), created_at=self.clock(),
                      workflow_path=workflow_path)
        if bundle_path is not None:
            doc["bundle_path"] = bundle_path
        if warnings:
            doc["warnings"] = list(warnings)
        if dry_run:
            doc["dry_run"] = True
        if self.backend.shared:  # processes sharing the run plan it one after the other
            doc["plan_rev"] = 0
        self.backend.create_run(doc)
        return str(doc["id"])

    def _store(self, run_id: str) -> RunStore:
        with self._active_lock:
            store = self._active.get(run_id)
        return store if store is not None else RunStore(self.backend, run_id, self.writer,
                                                        self.clock)

    def _setup(self, store: RunStore, cancel: threading.Event,
               patches: PatchKeeper | None = None) -> TaskSetup:
        workflow = Workflow.model_validate(store.doc["workflow"])
        return TaskSetup(workflow=workflow, store=store, runtimes=self.runtimes,
                         workspace=self.workspace, control_root=self.control_root,
                         host_env=self.env, ancestors=ancestors_of(workflow),
                         emit=self.emit, clock=self.clock, cancel=cancel,
                         runner_id=self.runner_id, secrets=dict(self.settings.secrets),
                         secret_params=dict(self.settings.secret_params),
                         masker=self.masker, step_traverse=self.settings.step_traverse,
                         bundle_path=str(self.settings.bundle_dir
                                         or store.doc.get("bundle_path")
                                         or self.workspace),
                         state_schema=state_schema(workflow),
                         codemod_bin=self.settings.codemod_bin, patches=patches)

    def execute(self, run_id: str, cancel: threading.Event | None = None) -> RunStatus:
        """Run until nothing more can run; return the run's status then."""
        store = RunStore(self.backend, run_id, self.writer, self.clock)
        with self._active_lock:
            if run_id in self._active:
                raise UsageError(f"run {run_id} is already executing in this process")
            self._active[run_id] = store
        try:
            patches = self._patches(run_id, Workflow.model_validate(store.doc["workflow"]))
            loop = RunLoop(self._setup(store, threading.Event(), patches),
                           max_parallel=self.max_parallel,
                           external_cancel=cancel or threading.Event())
            return loop.run()
        finally:
            with self._active_lock:
                self._active.pop(run_id, None)

    def _patches(self, run_id: str, workflow: Workflow,
                 task: str | None = None) -> PatchKeeper | None:
        """The keeper of the run's patches when it has codemod steps (its base taken now, or
        at the run's first start); a distributed run's task keeps its own."""
        kinds = {s.kind for n in workflow.nodes for s in n.steps}
        kinds |= {s.kind for t in workflow.templates for s in t.steps}
        if kinds.isdisjoint({"js-ast-grep", "ast-grep", "codemod", "shard"}):
            return None
        run_dir = control_dir_under(self.control_root, run_id, "snapshot").parent.parent
        keeper = (PatchKeeper(run_dir / "snapshot.git", self.workspace, self.env,
                              checkout=self.settings.checkout)
                  if task is None else
                  TaskPatchKeeper(run_dir / "snapshot.git", self.workspace, self.env, task))
        keeper.begin()
        return keeper

    def execute_task(self, run_id: str, task_id: str,
                     cancel: threading.Event | None = None) -> TaskStatus:
        """Run one task that a planner elsewhere marked Running (a distributed run's task, the
        server planning the run): its steps, outputs and retries, and its end; returns its
        status then (Completed or Failed). `cancel` stops it like a run's cancel."""
        store = RunStore(self.backend, run_id, self.writer, self.clock)
        status = store.task(task_id)["status"]
        if status != TaskStatus.RUNNING.value:
            raise UsageError(f"task {task_id} of run {run_id} is {status}, not Running")
        # its patch: its change to its own checkout of the run's commit
        patches = self._patches(run_id, Workflow.model_validate(store.doc["workflow"]), task_id)
        try:
            TaskRunner(self._setup(store, cancel or threading.Event(), patches), task_id).run()
        finally:
            if patches is not None:
                patches.end()
        return TaskStatus(store.task(task_id)["status"])

    def trigger(self, run_id: str, task_ids: list[str] | None = None) -> list[str]:
        """Let AwaitingTrigger tasks run (None: all of them); returns the ids triggered. A
        master's id stands for its awaiting children."""
        store = self._store(run_id)
        with store.lock:
            store.refresh()
            doc = store.doc
            tasks = doc["tasks"]
            if doc["status"] in TERMINAL_RUN:
                raise UsageError(f"run {run_id} is {doc['status']}; there is nothing to trigger")
            awaiting = [t for t in tasks.values() if not t.get("master")
                        and t["status"] == TaskStatus.AWAITING_TRIGGER.value]
            chosen: list[dict[str, Any]] = []
            for tid in (task_ids if task_ids is not None else [t["id"] for t in awaiting]):
                task = _find_task(tasks, tid, run_id)
                if task.get("master"):
                    kids = [t for t in awaiting if t.get("parent") == task["id"]]
                    if not kids:
                        raise UsageError(f"task {task['id']} ({task_label(doc, task)}) has no "
                                         "children awaiting a trigger")
                    chosen += kids
                elif task["status"] != TaskStatus.AWAITING_TRIGGER.value:
                    raise UsageError(f"task {task['id']} ({task_label(doc, task)}) is "
                                     f"{task['status']}, not AwaitingTrigger")
                else:
                    chosen.append(task)
            ids = list(dict.fromkeys(t["id"] for t in chosen))
            ops = []
            for tid in ids:
                ops += [task_field_op(tid, "triggered", True),
                        task_field_op(tid, "status", TaskStatus.PENDING.value)]
            if ids and doc["status"] == RunStatus.AWAITING_TRIGGER.value:
                ops.append(run_field_op("status", RunStatus.PENDING.value))
            store.commit(ops)
            for tid in ids:
                self.emit(ev.TaskTriggered(run_id, self.clock(), tid,
                                           task_label(doc, tasks[tid])))
        return ids

    def retry_failed(self, run_id: str) -> list[str]:
        """Make a Failed run runnable again: its Failed and Blocked tasks (and matrix masters)
        go back to Pending, Completed ones stay; returns the task ids reset. UsageError when the
        run is not Failed. `execute` then runs them ("re-run failed jobs")."""
        store = self._store(run_id)
        with store.lock:
            store.refresh()
            doc = store.doc
            if doc["status"] != RunStatus.FAILED.value:
                raise UsageError(f"run {run_id} is {doc['status']}: --retry-failed re-runs the "
                                 "failed and blocked tasks of a Failed run")
            ops, reset = retry_failed_ops(doc)
            store.commit(ops)
        return reset

    def request_cancel(self, run_id: str) -> RunStatus:
        """Ask whoever executes the run to cancel it (`cancel_requested: true`) and return the
        run's status now. A run that nobody executes (Pending or AwaitingTrigger) ends Canceled
        at once: its tasks that had not started become WontDo."""
        store = self._store(run_id)
        with store.lock:
            store.refresh()
            doc = store.doc
            if doc["status"] in TERMINAL_RUN:
                raise UsageError(f"run {run_id} is already {doc['status']}")
            ops = [] if doc.get("cancel_requested") else [run_field_op("cancel_requested", True)]
            idle = doc["status"] in (RunStatus.PENDING.value, RunStatus.AWAITING_TRIGGER.value)
            with self._active_lock:
                idle = idle and run_id not in self._active
            if idle:
                workflow = Workflow.model_validate(doc["workflow"])
                result = plan(workflow, {**doc, "cancel_requested": True})
                now = self.clock()
                ops += result.ops
                ops += [run_field_op("status", RunStatus.CANCELED.value),
                        run_field_op("ended_at", now), run_field_op("error", "canceled")]
            store.commit(ops)
            if idle:
                self.emit(ev.RunFinished(run_id, self.clock(), RunStatus.CANCELED.value,
                                         "canceled"))
            return RunStatus(store.doc["status"])


def _find_task(tasks: Mapping[str, dict[str, Any]], task_id: str, run_id: str) -> dict[str, Any]:
    """A task by id or unique id prefix; UsageError naming the id otherwise."""
    if task_id in tasks:
        return tasks[task_id]
    matches = [t for tid, t in tasks.items() if len(task_id) >= 4 and tid.startswith(task_id)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"task id prefix '{task_id}' is ambiguous in run {run_id}")
    raise UsageError(f"unknown task '{task_id}' in run {run_id}")


def _stem(path: str | None) -> str | None:
    return Path(path).stem if path else None
