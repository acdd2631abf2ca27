"""The loop that drives one run: plan, start ready tasks, wait, repeat, until nothing can run.

Planning is a full scheduler pass (linear in tasks), so the loop does not plan after every task
that ends: it keeps the runnable tasks of the last pass in a queue and starts them as slots free
up, and plans again only when the queue is empty, a task failed, a step wrote workflow state
(a `from_state` matrix may grow), or another writer changed the run. A 10,000-task matrix is thus
planned a handful of times, not 10,000 times. Waiting is `Event.wait(poll)`: a task's end wakes
the loop at once, and every `poll` seconds it looks for other writers' changes (cancel, trigger).

On a shared backend (`database`: several processes execute one run) writes that must not race
are compare-and-set: a task starts only if it is still Pending (a `test` op), a plan is written
only over the plan it was made from (`plan_rev`), and a failed test means "another process got
there first": refresh and go on. A Running task whose process is alive is left to it; one whose
process died (`backend.alive`) is interrupted and runs again here.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from runner.diff import PatchConflict
from runner.document import (
    TERMINAL_RUN,
    TERMINAL_TASK,
    Op,
    RunStatus,
    TaskStatus,
    run_field_op,
    task_field_op,
    task_label,
)
from runner.engine import events as ev
from runner.engine.scheduler import Plan, plan
from runner.engine.task_runner import TaskRunner
from runner.engine.task_setup import Outcome, TaskSetup
from runner.errors import TooLarge


class RunLoop:
    """Executes one run to Completed, Failed, AwaitingTrigger or Canceled."""

    def __init__(self, setup: TaskSetup, *, max_parallel: int, external_cancel: threading.Event,
                 poll: float = 0.15) -> None:
        self.s = setup
        self.store = setup.store
        self.max_parallel = max(1, max_parallel)
        self.external_cancel = external_cancel
        self.poll = poll
        self.wake = threading.Event()
        self.active: dict[str, Future[Outcome]] = {}
        self.queue: deque[str] = deque()
        self.shared = bool(getattr(self.store.backend, "shared", False))
        self._next_orphan_check = 0.0

    # -- helpers -----------------------------------------------------------------------------
    def emit(self, event: ev.Event) -> None:
        """Send an event through the setup's serialized sink."""
        self.s.emit(event)

    def now(self) -> str:
        """The executor's clock."""
        return self.s.clock()

    def _task_event(self, task: dict[str, Any], status: str, previous: str | None,
                    error: str | None = None, interrupted: bool = False) -> ev.TaskStatusChanged:
        return ev.TaskStatusChanged(
            self.store.run_id, self.now(), task["id"], task["node_id"],
            task_label(self.store.doc, task), status, previous, error, bool(task.get("master")),
            int(task.get("attempt") or 0), interrupted)

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> RunStatus:
        """Drive the run until it ends or pauses; never returns while a task of ours runs."""
        status = RunStatus(self.store.doc["status"])
        if status in (RunStatus.COMPLETED, RunStatus.CANCELED):
            return status
        self.prepare()
        pool = ThreadPoolExecutor(max_workers=self.max_parallel, thread_name_prefix="ferry-task")
        try:
            return self._loop(pool)
        except BaseException as exc:
            self.s.cancel.set()
            for other in self._drain():  # the first error propagates; the others ride on it
                exc.add_note(f"another task's thread failed too: {type(other).__name__}: {other}")
            raise
        finally:
            pool.shutdown(wait=True)

    def _loop(self, pool: ThreadPoolExecutor) -> RunStatus:
        need_plan = True
        while True:
            if self.external_cancel.is_set() or self.store.doc.get("cancel_requested"):
                return self.cancel()
            if self.harvest():
                need_plan = True
            if self.store.refresh():
                need_plan = True
            if self.shared and not self.active and self._reclaim_orphans():
                need_plan = True
            if need_plan:
                need_plan = False
                try:
                    current = self.plan_pass()
                except TooLarge as exc:  # e.g. a matrix too large for one change of the run
                    return self.fail(f"cannot plan the run: {exc}")
                self.queue = deque(t for t in current.runnable if t not in self.active)
                if not self.queue and not self.active and current.status != RunStatus.RUNNING:
                    return self.finish(current)
            self.start(pool)
            self.wake.wait(self.poll)
            self.wake.clear()

    def prepare(self) -> None:
        """Tasks found Running were interrupted (their runner died): back to Pending."""
        ops: list[Op] = []
        if self.shared:
            self.store.backend.announce(self.store.writer)
        with self.store.lock:
            doc = self.store.doc
            resumed = doc.get("started_at") is not None
            for tid, task in doc["tasks"].items():
                if task["status"] == TaskStatus.RUNNING.value and not task.get("master"):
                    if self._held_elsewhere(task):
                        continue
                    ops += [task_field_op(tid, "status", TaskStatus.PENDING.value),
                            task_field_op(tid, "interrupted", int(task.get("interrupted", 0)) + 1),
                            task_field_op(tid, "error", "interrupted: its runner stopped")]
                    self.emit(self._task_event(task, TaskStatus.PENDING.value,
                                               TaskStatus.RUNNING.value, interrupted=True))
            if doc["status"] != RunStatus.RUNNING.value:
                ops.append(run_field_op("status", RunStatus.RUNNING.value))
            if not resumed:
                ops.append(run_field_op("started_at", self.now()))
            if doc.get("ended_at") is not None:
                ops += [run_field_op("ended_at", None), run_field_op("error", None)]
            self.store.commit(ops)
            self.emit(ev.RunStarted(self.store.run_id, self.now(), str(doc.get("name", "")),
                                    resumed))

    def plan_pass(self) -> Plan:
        """One scheduler pass, written as one diff together with timestamps and run status (on a
        shared backend: over the plan it was made from, else planned again)."""
        while True:
            with self.store.lock:
                doc = self.store.doc
                result = plan(self.s.workflow, doc)
                ops = list(result.ops)
                now = self.now()
                for tr in result.transitions:
                    if tr.old is not None and tr.new in TERMINAL_TASK:
                        ops.append(task_field_op(tr.task_id, "ended_at", now))
                ops += self._run_status_ops(result.status, result.error)
                if self.shared and ops:
                    rev = doc.get("plan_rev")
                    guard = [] if rev is None else [{"op": "test", "path": "/plan_rev",
                                                     "value": rev}]
                    ops = [*guard, *ops, {"op": "add", "path": "/plan_rev",
                                          "value": int(rev or 0) + 1}]
                try:
                    self.store.commit(ops)
                except PatchConflict:
                    if not self.shared:
                        raise
                    self.store.reload()  # another process planned first: plan on its result
                    continue
                self._announce(result)
            return result

    def _held_elsewhere(self, task: dict[str, Any]) -> bool:
        """A Running task another live process executes (shared backends only)."""
        writer = task.get("writer")
        return (self.shared and isinstance(writer, str) and writer != self.store.writer
                and self.store.backend.alive(writer))

    def _reclaim_orphans(self) -> bool:
        """At most once a second while idle: tasks Running under a process that died go back
        to Pending (interrupted); True when some did."""
        if time.monotonic() < self._next_orphan_check:
            return False
        self._next_orphan_check = time.monotonic() + 1.0
        ops: list[Op] = []
        with self.store.lock:
            for tid, task in self.store.doc["tasks"].items():
                if (task["status"] == TaskStatus.RUNNING.value and not task.get("master")
                        and tid not in self.active and not self._held_elsewhere(task)):
                    ops += [{"op": "test", "path": f"/tasks/{tid}/status",
                             "value": TaskStatus.RUNNING.value},
                            task_field_op(tid, "status", TaskStatus.PENDING.value),
                            task_field_op(tid, "interrupted", int(task.get("interrupted", 0)) + 1),
                            task_field_op(tid, "error", "interrupted: its runner stopped")]
            if not ops:
                return False
            try:
                self.store.commit(ops)
            except PatchConflict:  # another process changed the run first: next pass sees it
                self.store.reload()
        return True

    def _run_status_ops(self, status: RunStatus, error: str | None) -> list[Op]:
        doc = self.store.doc
        ops: list[Op] = []
        if doc["status"] != status.value:
            ops.append(run_field_op("status", status.value))
        if status in TERMINAL_RUN:
            ops += [run_field_op("ended_at", self.now()), run_field_op("error", error)]
        return ops

    def _announce(self, result: Plan) -> None:
        tasks = self.store.doc["tasks"]
        created = {t["id"] for t in result.created}
        by_master: dict[str, list[ev.MatrixChild]] = {}
        for task in result.created:
            if task.get("master"):
                by_master.setdefault(task["id"], [])
            elif task.get("parent"):
                live = tasks[task["id"]]
                by_master.setdefault(task["parent"], []).append(ev.MatrixChild(
                    task["id"], task_label(self.store.doc, live), dict(task["matrix"] or {}),
                    live["status"]))
        for master_id, children in by_master.items():
            self.emit(ev.MatrixTasksCreated(self.store.run_id, self.now(),
                                            tasks[master_id]["node_id"], master_id, children))
        for tr in result.transitions:
            if tr.old is None and tr.task_id in created and tr.new == TaskStatus.PENDING.value:
                continue  # creation is announced above (or is a plain Pending task)
            self.emit(self._task_event(tasks[tr.task_id], tr.new, tr.old, tr.error))

    def start(self, pool: ThreadPoolExecutor) -> None:
        """Mark queued tasks Running (one diff) and hand them to the pool, up to max_parallel."""
        free = self.max_parallel - len(self.active)
        if free <= 0 or not self.queue:
            return
        batch = [self.queue.popleft() for _ in range(min(free, len(self.queue)))]
        with self.store.lock:
            batch = self._take(batch)
            for tid in batch:
                self.emit(self._task_event(self.store.task(tid), TaskStatus.RUNNING.value,
                                           TaskStatus.PENDING.value))
        for tid in batch:
            runner = TaskRunner(self.s, tid)
            future = pool.submit(runner.run)
            future.add_done_callback(lambda _f: self.wake.set())
            self.active[tid] = future

    def _start_ops(self, tids: list[str]) -> list[Op]:
        now = self.now()
        ops: list[Op] = []
        for tid in tids:
            task = self.store.task(tid)
            if self.shared:  # only if still Pending: another process may have taken it
                ops += [{"op": "test", "path": f"/tasks/{tid}/status",
                         "value": TaskStatus.PENDING.value},
                        {"op": "add", "path": f"/tasks/{tid}/writer", "value": self.store.writer}]
            ops += [task_field_op(tid, "status", TaskStatus.RUNNING.value),
                    task_field_op(tid, "attempt", int(task.get("attempt") or 0) + 1),
                    task_field_op(tid, "started_at", now),
                    task_field_op(tid, "ended_at", None),
                    task_field_op(tid, "step", None),
                    task_field_op(tid, "error", None)]
        return ops

    def _take(self, batch: list[str]) -> list[str]:
        """Mark `batch` Running (one diff); on a shared backend a task another process took
        meanwhile is left out. Returns the tasks this process now runs (call holding the lock)."""
        try:
            self.store.commit(self._start_ops(batch))
            return batch
        except PatchConflict:
            if not self.shared:
                raise
        taken = []
        for tid in batch:  # one at a time: which ones are still ours to take?
            self.store.reload()
            if self.store.task(tid)["status"] != TaskStatus.PENDING.value:
                continue
            try:
                self.store.commit(self._start_ops([tid]))
                taken.append(tid)
            except PatchConflict:  # another process started this task first: it is theirs
                continue
        return taken

    def harvest(self) -> bool:
        """Collect ended tasks; True when the run needs a new plan. Re-raises a task thread's
        unexpected error (a state store failure) after stopping the others."""
        replan = ended = False
        for tid, future in list(self.active.items()):
            if not future.done():
                continue
            del self.active[tid]
            ended = True
            outcome = future.result()  # raises what the runner could not record
            if not outcome.ok or outcome.state_changed:
                replan = True
        # With runnable tasks still queued every slot stays busy: no need to plan yet.
        return replan or (ended and not self.queue) or (not self.queue and not self.active)

    def _drain(self) -> list[BaseException]:
        """Wait for every running task's thread; the errors they could not record."""
        errors = [exc for future in list(self.active.values())
                  if (exc := future.exception()) is not None]
        self.active.clear()
        return errors

    def cancel(self) -> RunStatus:
        """Stop running tasks (they end Failed 'canceled'), mark the rest WontDo, end Canceled."""
        self.s.cancel.set()
        errors = self._drain()
        if errors:  # a task could not record how it stopped: the run's state is not known
            first, *others = errors
            for other in others:
                first.add_note(f"another task's thread failed too: {type(other).__name__}: "
                               f"{other}")
            raise first
        with self.store.lock:
            if not self.store.doc.get("cancel_requested"):
                self.store.commit([run_field_op("cancel_requested", True)])
            self.plan_pass()
        self.emit(ev.RunFinished(self.store.run_id, self.now(), RunStatus.CANCELED.value,
                                 "canceled"))
        return RunStatus.CANCELED

    def fail(self, error: str) -> RunStatus:
        """End the run Failed with `error`: running tasks are stopped first."""
        self.s.cancel.set()
        self._drain()
        with self.store.lock:
            self.store.commit([run_field_op("status", RunStatus.FAILED.value),
                               run_field_op("ended_at", self.now()),
                               run_field_op("error", error)])
        self.emit(ev.RunFinished(self.store.run_id, self.now(), RunStatus.FAILED.value, error))
        return RunStatus.FAILED

    def finish(self, result: Plan) -> RunStatus:
        """The run ended or paused: announce it."""
        if result.status == RunStatus.AWAITING_TRIGGER:
            with self.store.lock:
                tasks = self.store.doc["tasks"]
                awaiting = [(t, task_label(self.store.doc, tasks[t])) for t in result.awaiting]
            self.emit(ev.RunPaused(self.store.run_id, self.now(), awaiting))
        else:
            self.emit(ev.RunFinished(self.store.run_id, self.now(), result.status.value,
                                     result.error))
        return result.status

