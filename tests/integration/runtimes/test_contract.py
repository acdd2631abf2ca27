"""One contract, every runtime: the same steps give the same results on host and in containers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from runner.runtimes.base import Runtime
from runner.runtimes.direct import DirectRuntime
from runner.runtimes.docker import DockerRuntime
from runner.runtimes.tracking import Tracking
from runner.workflow.model import Runtime as RuntimeOptions
from runner.workflow.model import RuntimeType
from tests.integration.runtimes.runtime_kit import Output, Task, task_spec

HOST_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "FROM_BASE": "base", "OVERRIDE": "base"}

OpenTask = Callable[..., Task]


def _direct(request: pytest.FixtureRequest) -> tuple[Runtime, RuntimeOptions]:
    return DirectRuntime(HOST_ENV, grace_seconds=1.0), RuntimeOptions(type=RuntimeType.DIRECT)


def _direct_popen(request: pytest.FixtureRequest) -> tuple[Runtime, RuntimeOptions]:
    """The host runtime starting steps through subprocess.Popen (see runtimes.spawn)."""
    runtime = DirectRuntime(HOST_ENV, grace_seconds=1.0, fast_spawn=False)
    return runtime, RuntimeOptions(type=RuntimeType.DIRECT)


def _direct_session(request: pytest.FixtureRequest) -> tuple[Runtime, RuntimeOptions]:
    """The host runtime tracking steps by session and marker (no cgroup)."""
    runtime = DirectRuntime(HOST_ENV, grace_seconds=1.0, tracking=Tracking.SESSION)
    return runtime, RuntimeOptions(type=RuntimeType.DIRECT)


def _docker(request: pytest.FixtureRequest) -> tuple[Runtime, RuntimeOptions]:
    image = request.getfixturevalue("docker_image")
    runtime = DockerRuntime(docker.from_env, runner_id="contract-tests", grace_seconds=1.0)
    return runtime, RuntimeOptions(type=RuntimeType.DOCKER, image=image)


def _podman(request: pytest.FixtureRequest) -> tuple[Runtime, RuntimeOptions]:
    image = request.getfixturevalue("podman_image")
    runtime = request.getfixturevalue("podman_runtime")
    return runtime, RuntimeOptions(type=RuntimeType.PODMAN, image=image)


RUNTIMES: dict[str, Callable[[pytest.FixtureRequest], tuple[Runtime, RuntimeOptions]]] = {
    "direct": _direct, "direct-popen": _direct_popen, "direct-session": _direct_session,
    "docker": _docker, "podman": _podman}


@pytest.fixture(params=list(RUNTIMES))
def open_task(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenTask]:
    """Opens tasks on the runtime under test; closes them at the end."""
    runtime, options = RUNTIMES[request.param](request)
    handles: list[Task] = []

    def opener(name: str = "t", env: dict[str, str] | None = None) -> Task:
        spec = task_spec(tmp_path, options, env=env, name=name)
        task = Task(runtime.open(spec), spec.workspace, spec.control_dir)
        handles.append(task)
        return task

    yield opener
    for task in handles:
        task.handle.close()


def test_exit_codes_are_reported(open_task: OpenTask) -> None:
    task = open_task()
    ok, _ = task.run("true")
    failed, _ = task.run("exit 3")
    assert (ok.exit_code, ok.ok, ok.reason) == (0, True, None)
    assert (failed.exit_code, failed.ok) == (3, False)
    assert failed.describe() == "exit code 3"


def test_set_e_stops_the_script_at_the_first_failure(open_task: OpenTask) -> None:
    result, out = open_task().run("echo before\nfalse\necho after\n")
    assert result.exit_code == 1
    assert out.text == "before\n"


def test_stdout_and_stderr_arrive_interleaved_in_order(open_task: OpenTask) -> None:
    result, out = open_task().run(
        "echo one\necho two >&2\necho three\necho four >&2\nprintf 'no newline'\n")
    assert result.ok
    assert out.text == "one\ntwo\nthree\nfour\nno newline"


def test_output_streams_while_the_step_runs(open_task: OpenTask) -> None:
    task = open_task()

    def answer(chunk: bytes) -> None:
        if b"waiting" in chunk:
            (task.workspace / "go").write_text("")

    # The step only finishes once the test has seen its first line: output must be live.
    result, out = task.run(
        "echo waiting\nwhile [ ! -e go ]; do sleep 0.02; done\necho released\n",
        timeout=20, sink=Output(hook=answer))
    assert result.ok, out.text
    assert out.text == "waiting\nreleased\n"


def test_environment_layers_task_over_base_and_step_over_task(open_task: OpenTask) -> None:
    task = open_task(env={"TASK_ONLY": "task", "OVERRIDE": "task", "SPACED": "a b  c"})
    result, out = task.run(
        'echo "$TASK_ONLY|$OVERRIDE|$STEP_ONLY|$SPACED"', env={"STEP_ONLY": "step",
                                                              "OVERRIDE": "step"})
    assert result.ok, out.text
    assert out.text == "task|step|step|a b  c\n"


def test_working_directory_is_the_workspace_and_files_persist(open_task: OpenTask) -> None:
    task = open_task()
    (task.workspace / "input.txt").write_text("from host\n")
    first, out1 = task.run("cat input.txt\necho made > made.txt\nmkdir -p sub && echo x > sub/y")
    second, out2 = task.run("cat made.txt sub/y")
    assert first.ok and second.ok, out1.text + out2.text
    assert out1.text == "from host\n"
    assert out2.text == "made\nx\n"
    assert (task.workspace / "made.txt").read_text() == "made\n"
    stat = (task.workspace / "made.txt").stat()
    owner = task.workspace.stat()
    assert (stat.st_uid, stat.st_gid) == (owner.st_uid, owner.st_gid)


def test_control_files_are_reachable_through_path_for(open_task: OpenTask) -> None:
    task = open_task()
    outputs = task.control / "state-outputs"
    outputs.write_text("")
    seen = task.handle.path_for(outputs)
    result, out = task.run('echo "count=3" >> "$STATE_OUTPUTS"\necho "items@=\\"a\\"" >> '
                           '"$STATE_OUTPUTS"', env={"STATE_OUTPUTS": seen})
    assert result.ok, out.text
    assert outputs.read_text() == 'count=3\nitems@="a"\n'


def test_shebang_scripts_run_with_their_interpreter(open_task: OpenTask) -> None:
    result, out = open_task().run("#!/bin/sh\nset -u\necho \"shebang $# args\"\nexit 4\n")
    assert out.text == "shebang 0 args\n"
    assert result.exit_code == 4


def test_missing_program_is_a_failed_step_not_an_exception(open_task: OpenTask) -> None:
    result, _ = open_task().run("#!/nonexistent/interpreter\necho never\n")
    assert result.exit_code in (126, 127)
    assert not result.ok


def test_timeout_stops_the_step(open_task: OpenTask) -> None:
    task = open_task()
    result, out = task.run("echo started\nsleep 300\necho never\n", timeout=0.5)
    assert result.reason == "timeout"
    assert result.describe() == "timed out"
    assert not result.ok
    assert out.text == "started\n"
    after, _ = task.run("echo still usable")
    assert after.ok


def test_a_step_ignoring_sigterm_is_killed_after_the_grace(open_task: OpenTask) -> None:
    result, out = open_task().run("trap '' TERM\necho armed\nsleep 300\n", timeout=0.5)
    assert result.reason == "timeout"
    assert out.text == "armed\n"


def test_cancel_stops_the_step(open_task: OpenTask) -> None:
    task = open_task()
    cancel = threading.Event()

    def on_output(chunk: bytes) -> None:
        if b"running" in chunk:
            cancel.set()

    result, out = task.run("echo running\nsleep 300\necho never\n", cancel=cancel,
                           sink=Output(hook=on_output), timeout=60)
    assert result.reason == "canceled"
    assert result.describe() == "canceled"
    assert out.text == "running\n"


def test_a_step_killed_by_a_signal_reports_it(open_task: OpenTask) -> None:
    result, _ = open_task().run("kill -KILL $$")
    assert not result.ok
    # On the host the shell itself dies of the signal; in a container exec reports 128+9.
    assert result.signal == 9 or result.exit_code == 137


def test_close_is_idempotent(open_task: OpenTask) -> None:
    task = open_task()
    assert task.run("true")[0].ok
    task.handle.close()
    task.handle.close()


def test_host_environment_is_not_leaked_beyond_base_env(open_task: OpenTask,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_TEST_SHOULD_NOT_LEAK", "1")
    result, out = open_task().run('echo "[${FERRY_TEST_SHOULD_NOT_LEAK:-}]"')
    assert result.ok
    assert out.text == "[]\n"
