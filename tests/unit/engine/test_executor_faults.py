"""Retries, timeouts, cancellation, crash-resume and runtime errors, with real processes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from runner.diff import Diff
from runner.document import RunStatus, TaskStatus, run_field_op, task_field_op
from runner.engine.executor import Executor, ExecutorSettings
from runner.errors import RuntimeUnavailable, StateError, UsageError
from runner.paths import Paths
from runner.runtimes.base import TaskSpec
from runner.state.local import LocalBackend
from tests.helpers import wait_until
from tests.unit.engine.engine_support import MemoryBackend, by_node, make_executor, one, workflow

S = TaskStatus


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as p:
        yield p


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_retry_reruns_a_failed_task_until_it_passes(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    executor, backend, sink = make_executor(tmp_path)
    run_id = executor.create_run(workflow(f"""
version: "1"
nodes:
  - id: flaky
    retry: {{attempts: 3, backoff: 10ms}}
    steps:
      - run: |
          echo x >> {counter}
          test $(wc -l < {counter}) -ge 2
"""))
    assert executor.execute(run_id, threading.Event()) == RunStatus.COMPLETED
    task = one(backend.load(run_id), "flaky")
    assert task["status"] == S.COMPLETED and task["attempt"] == 2 and task["error"] is None
    assert counter.read_text().count("x") == 2
    retrying = [e for e in sink.events if e.kind == "task_retrying"]
    assert len(retrying) == 1 and "exit code 1" in retrying[0].error


def test_retry_gives_up_after_the_last_attempt(tmp_path: Path) -> None:
    executor, backend, _ = make_executor(tmp_path)
    run_id = executor.create_run(workflow("""
version: "1"
nodes:
  - {id: never, retry: {attempts: 2}, steps: [{name: nope, run: "exit 4"}]}
"""))
    assert executor.execute(run_id, threading.Event()) == RunStatus.FAILED
    task = one(backend.load(run_id), "never")
    assert task["attempt"] == 2 and task["error"] == "step 'nope' failed: exit code 4"


@pytest.mark.parametrize("where", ["step", "node"])
def test_timeout_fails_the_task_and_kills_the_process(tmp_path: Path, where: str) -> None:
    pidfile = tmp_path / "pid"
    step_timeout = "timeout: 1s" if where == "step" else ""
    node_timeout = "timeout: 1s" if where == "node" else ""
    executor, backend, _ = make_executor(tmp_path)
    run_id = executor.create_run(workflow(f"""
version: "1"
nodes:
  - id: slow
    {node_timeout}
    steps:
      - name: sleeper
        {step_timeout}
        run: |
          sleep 30 &
          echo $! > {pidfile}
          wait
"""))
    assert executor.execute(run_id, threading.Event()) == RunStatus.FAILED
    task = one(backend.load(run_id), "slow")
    assert task["status"] == S.FAILED and "timed out" in task["error"]
    if where == "node":
        assert "node timeout 1s" in task["error"]
    assert gone(int(pidfile.read_text()))


SLOW_MATRIX = """
version: "1"
nodes:
  - id: slow
    strategy: {{type: matrix, values: [{{n: 1}}, {{n: 2}}]}}
    steps: [{{run: "sleep 30 & echo $! > {pids}/$n; wait"}}]
  - {{id: later, depends_on: [slow], steps: [{{run: "true"}}]}}
"""


def start_slow(tmp_path: Path, executor: Executor, pool: ThreadPoolExecutor,
               cancel: threading.Event) -> tuple[str, Future[RunStatus], list[int]]:
    pids = tmp_path / "pids"
    pids.mkdir()
    run_id = executor.create_run(workflow(SLOW_MATRIX.format(pids=pids)))
    future = pool.submit(executor.execute, run_id, cancel)
    wait_until(lambda: len(list(pids.iterdir())) == 2, timeout=20, message="both steps started")
    wait_until(lambda: all(p.read_text().strip() for p in pids.iterdir()), timeout=5)
    return run_id, future, [int(p.read_text()) for p in pids.iterdir()]


def assert_canceled(doc: dict[str, Any], pids: list[int]) -> None:
    assert doc["status"] == "Canceled" and doc["cancel_requested"] is True
    master, *kids = by_node(doc, "slow")
    # stopped tasks stay Failed for the scheduler, marked `canceled` (shown Canceled)
    assert all(k["status"] == S.FAILED and k.get("canceled") is True
               and k["error"].startswith("stopped during step ") for k in kids)
    assert one(doc, "later")["status"] == S.WONT_DO
    assert master["status"] == S.WONT_DO  # a canceled matrix, not a failed one
    assert all(gone(pid) for pid in pids)


def test_cancel_event_stops_running_steps(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    executor, backend, _ = make_executor(tmp_path)
    cancel = threading.Event()
    run_id, future, pids = start_slow(tmp_path, executor, pool, cancel)
    cancel.set()
    assert future.result(timeout=20) == RunStatus.CANCELED
    assert_canceled(backend.load(run_id), pids)


def test_cancel_requested_by_another_writer(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    backend = LocalBackend(tmp_path / "ferry.db", tmp_path / "logs")
    executor, _, _ = make_executor(tmp_path, backend, writer="local-runner")
    run_id, future, pids = start_slow(tmp_path, executor, pool, threading.Event())
    other = Executor(LocalBackend(tmp_path / "ferry.db", tmp_path / "logs"), {},
                     ExecutorSettings(writer="local-cancel",
                                      control_root=Paths.under(tmp_path / "home").work_dir))
    assert other.request_cancel(run_id) == RunStatus.RUNNING  # someone else executes it
    assert future.result(timeout=20) == RunStatus.CANCELED
    assert_canceled(backend.load(run_id), pids)
    writers = [d.writer for d in backend.history(run_id)]
    assert writers.count("local-cancel") == 1


def test_cancel_of_a_paused_run_ends_it_at_once(tmp_path: Path) -> None:
    executor, backend, _ = make_executor(tmp_path)
    run_id = executor.create_run(workflow("""
version: "1"
nodes:
  - {id: gate, type: manual, steps: [{run: "true"}]}
"""))
    assert executor.execute(run_id, threading.Event()) == RunStatus.AWAITING_TRIGGER
    assert executor.request_cancel(run_id) == RunStatus.CANCELED
    doc = backend.load(run_id)
    assert doc["status"] == "Canceled" and one(doc, "gate")["status"] == S.WONT_DO
    with pytest.raises(UsageError, match="already Canceled"):
        executor.request_cancel(run_id)
    with pytest.raises(UsageError, match="nothing to trigger"):
        executor.trigger(run_id, None)


def test_crash_resume_reruns_interrupted_and_never_completed_tasks(tmp_path: Path) -> None:
    log = tmp_path / "ran"
    backend = LocalBackend(tmp_path / "ferry.db", tmp_path / "logs")
    executor, _, _ = make_executor(tmp_path, backend, writer="local-1")
    run_id = executor.create_run(workflow(f"""
version: "1"
nodes:
  - {{id: a, steps: [{{run: "echo a >> {log}"}}]}}
  - {{id: b, depends_on: [a], steps: [{{run: "echo b >> {log}"}}]}}
"""))
    assert executor.execute(run_id, threading.Event()) == RunStatus.COMPLETED
    # Simulate a runner that died while b was running: b Running, run Running, no end.
    doc = backend.load(run_id)
    b = one(doc, "b")["id"]
    backend.apply(Diff(run_id, "crashed", 1, [
        task_field_op(b, "status", "Running"), task_field_op(b, "ended_at", None),
        run_field_op("status", "Running"), run_field_op("ended_at", None)]))
    resumed, _, sink = make_executor(tmp_path, LocalBackend(tmp_path / "ferry.db",
                                                            tmp_path / "logs"), writer="local-1")
    assert resumed.execute(run_id, threading.Event()) == RunStatus.COMPLETED
    assert log.read_text().split() == ["a", "b", "b"]  # a never ran again
    doc = backend.load(run_id)
    assert one(doc, "b")["interrupted"] == 1 and one(doc, "b")["attempt"] == 2
    assert one(doc, "a")["interrupted"] == 0 and one(doc, "a")["attempt"] == 1
    assert any(getattr(e, "interrupted", False) and e.task_id == b for e in sink.events)
    seqs = [d.seq for d in backend.history(run_id) if d.writer == "local-1"]
    assert seqs == list(range(1, len(seqs) + 1))  # the second process continued the seq


class _Refusing:
    """A runtime whose engine is down."""

    name = "docker"

    def open(self, spec: TaskSpec) -> Any:
        raise RuntimeUnavailable(f"image {spec.options.image} not found")

    def reap(self, active_run_ids: set[str]) -> int:
        return 0


def test_runtime_unavailable_fails_task_with_its_message(tmp_path: Path) -> None:
    executor = Executor(MemoryBackend(), {"docker": _Refusing()},
                        ExecutorSettings(workspace=tmp_path,
                                         control_root=Paths.under(tmp_path / "home").work_dir))
    run_id = executor.create_run(workflow("""
version: "1"
nodes:
  - {id: boxed, runtime: {type: docker, image: "nope:1"}, steps: [{run: "true"}]}
"""))
    assert executor.execute(run_id, threading.Event()) == RunStatus.FAILED
    doc = executor.backend.load(run_id)
    assert one(doc, "boxed")["error"] == "image nope:1 not found"


def test_control_dirs_are_removed_after_tasks(tmp_path: Path) -> None:
    executor, _backend, _ = make_executor(tmp_path)
    run_id = executor.create_run(workflow("""
version: "1"
nodes:
  - {id: a, steps: [{run: "test -x \\"$0\\" || test -f \\"$0\\"; echo ok"}]}
"""))
    assert executor.execute(run_id, threading.Event()) == RunStatus.COMPLETED
    tasks_dir = Paths.under(tmp_path / "home").work_dir / run_id / "tasks"
    assert not tasks_dir.exists() or not any(tasks_dir.iterdir())


class _FailsWhenStopping(MemoryBackend):
    """A store that breaks (disk gone, database locked) while tasks record how they stopped."""

    def apply(self, diff: Diff) -> bool:
        if any(op.get("path", "").endswith("/canceled") for op in diff.ops):
            raise StateError("database is locked")
        return super().apply(diff)


def test_a_task_that_cannot_record_its_cancel_fails_the_execute_loudly(
        tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    # Before: the cancel path drained task threads with their errors suppressed and reported
    # the run Canceled although two tasks never recorded that they stopped.
    executor, _, _ = make_executor(tmp_path, _FailsWhenStopping())
    cancel = threading.Event()
    _, future, pids = start_slow(tmp_path, executor, pool, cancel)
    cancel.set()
    with pytest.raises(StateError, match="database is locked") as info:
        future.result(timeout=20)
    assert any("another task's thread failed too" in note
               for note in getattr(info.value, "__notes__", []))
    assert all(gone(pid) for pid in pids)


class _NotingRuntime:
    """The host runtime, but `open` reports that it ended an earlier attempt's processes."""

    name = "direct"

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def open(self, spec: TaskSpec) -> Any:
        handle = self.inner.open(spec)
        handle.notes = ["ended 2 processes an earlier attempt of this task left running, "
                        "before running it again"]
        return handle

    def reap(self, active_run_ids: set[str]) -> int:
        return 0


def test_what_opening_a_task_ended_is_in_its_log_and_output(tmp_path: Path) -> None:
    executor, backend, sink = make_executor(tmp_path)
    executor.runtimes["direct"] = _NotingRuntime(executor.runtimes["direct"])
    run_id = executor.create_run(workflow("""
version: "1"
nodes:
  - {id: again, steps: [{run: "echo step"}]}
"""))
    assert executor.execute(run_id) == RunStatus.COMPLETED
    tid = one(backend.load(run_id), "again")["id"]
    log = backend.read_log(run_id, tid).decode()
    assert log.startswith("ferry: ended 2 processes an earlier attempt of this task left")
    assert "step" in log
    assert any(getattr(e, "line", "").startswith("ferry: ended 2 processes") for e in sink.events)
