"""`kill -9` of a runner mid-step, and nothing else: its steps die with it (the reaper,
`runner.cli.reaper`), before any other Ferry process starts.

The matrix: runner (`ferry run`, `ferry daemon`) x tracking (a cgroup per task, sessions and
markers, a Docker container). Each step double-forks a child that calls `setsid` (inside the
container too; under a cgroup it also clears its environment with `env -i`, which the session
fallback cannot follow: README "Reliability"); the step's shell and that child both beat
(`tests.helpers.beats`). Each cell
kills the runner's whole process group with SIGKILL once both beat, and then, without starting
anything, waits until no beat comes any more, every host process of the step is gone, the
container is gone and the reaper has said so and exited. Without the reaper the step beats on
(re-parented to init) until another Ferry process on this home ends it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import beats as bt
from tests.helpers import wait_until
from tests.helpers.reapers import gone, reaper_of
from tests.integration.daemon.conftest import REPO_ROOT, Server

CELLS = [  # (runner, tracking, step kind)
    ("run", "cgroup", "daemon"),
    ("run", "session", "detached"),
    ("run", "docker", "docker-detached"),
    ("daemon", "cgroup", "daemon"),
    ("daemon", "session", "detached"),
    ("daemon", "docker", "docker-detached"),
]
DEADLINE = 20.0
"""Seconds from the kill until everything of the step must be gone (SIGTERM ends these steps
at once; the runner's grace before SIGKILL is 5 s)."""
RESULTS: list[str] = []


def _allow_mounts(path: Path, **extra: Any) -> None:
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    data = data or {}
    runner = data.setdefault("runner", {})
    runner["containers"] = {"allow_mounts": True}
    runner.update(extra)
    path.write_text(yaml.safe_dump(data))


def _containers(run_id: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=ferry.run={run_id}"],
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.split()


def _start_run(tmp_path: Path, side: Path, kind: str, image: str,
               env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """`ferry run` in its own session, output to files; (process, stderr file, home)."""
    home = tmp_path / "home"
    config = tmp_path / "runner.yaml"
    _allow_mounts(config)
    wf = tmp_path / "beat.yaml"
    wf.write_text(bt.workflow(kind, image, where=side))
    err = tmp_path / "run.err"
    with open(tmp_path / "run.out", "wb") as out, open(err, "wb") as errs:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "run", "-c", str(config), "-w", str(wf)],
            cwd=tmp_path, stdout=out, stderr=errs, start_new_session=True,
            env={**env, "FERRY_HOME": str(home),
                 "PYTHONPATH": str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")})
    return proc, err, home


def _run_id(home: Path) -> str:
    runs = [p.name for p in (home / "data" / "work").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize(("runner", "tracking", "kind"), CELLS,
                         ids=[f"{r}-{t}" for r, t, _ in CELLS])
def test_a_killed_runner_takes_its_steps_with_it(tmp_path: Path, make_daemon: Any, runner: str,
                                                 tracking: str, kind: str,
                                                 request: pytest.FixtureRequest) -> None:
    image = request.getfixturevalue("docker_image") if tracking == "docker" else ""
    env = {**os.environ}
    if tracking != "docker":
        env["FERRY_PROCESS_TRACKING"] = tracking
    side = tmp_path / "side"
    side.mkdir()
    server: Server | None = None
    proc: subprocess.Popen[bytes] | None = None
    beating: set[int] = set()
    run_id = ""
    try:
        if runner == "run":
            proc, err_path, home = _start_run(tmp_path, side, kind, image, env)
            pid = proc.pid
        else:
            server = Server(tmp_path / "server")
            server.start()
            server.repo("demo", {"wf.yaml": bt.workflow(kind, image, where=side)})
            submitted = server.submit("demo", "wf.yaml")
            daemon = make_daemon(server)
            daemon.register()
            _allow_mounts(daemon.home / "config" / "runner.yaml", poll_wait=1)
            daemon.start(env={k: v for k, v in env.items() if k == "FERRY_PROCESS_TRACKING"})
            assert daemon.proc is not None
            pid, err_path, home = daemon.proc.pid, daemon.stderr_path, daemon.home
        wait_until(lambda: {"main", "daemon"} <= {b.role for b in bt.read(side)}
                   and len(bt.read(side)) >= 6, timeout=60,
                   message="the step and its detached child to beat")
        run_id = submitted if runner == "daemon" else _run_id(home)
        beating = bt.host_pids(bt.read(side), bt.attempts(bt.read(side))[0])
        assert tracking == "docker" or {"main", "daemon"} <= {
            b.role for b in bt.read(side) if b.pid in beating}
        if tracking == "docker":
            assert _containers(run_id), "the task's container runs"

        reaper = reaper_of(pid)  # checked last: the steps' end is what must not fail
        killed = time.monotonic()
        if runner == "run":  # its whole process group: the reaper has its own session
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)

        def quiet() -> bool:
            before = len(bt.read(side))
            time.sleep(0.3)  # beats come every 50 ms: six missed in a row
            return len(bt.read(side)) == before

        wait_until(lambda: all(gone(p) for p in beating) and quiet()
                   and (tracking != "docker" or not _containers(run_id)),
                   timeout=DEADLINE, message="every process and container of the step to end")
        took = time.monotonic() - killed
        assert reaper is not None, "the runner had no reaper"
        wait_until(lambda: gone(reaper), timeout=DEADLINE, message="the reaper to exit")
        said = err_path.read_text(errors="replace")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait(10)
        if server is not None:
            server.kill()
        (side / "release").touch()
        bt.kill_all({p for p in beating if bt.alive(p)})
        if tracking == "docker" and run_id:  # what a failing cell left
            for container in _containers(run_id):
                subprocess.run(["docker", "rm", "-f", container], capture_output=True, timeout=60)
    RESULTS.append(f"| {runner} | {tracking} | {kind} | gone after {took:.1f} s | "
                   f"{len(beating)} host processes |")
    print("\n| runner | tracking | step | result | found |\n|---|---|---|---|---|\n"
          + "\n".join(RESULTS))
    ended = "removed its container" if tracking == "docker" else "left running"
    assert "died while running task" in said and ended in said, said[-3000:]
    assert not list((home / "data" / "work").glob("*/tasks/*.procs")), "a ledger was left"
