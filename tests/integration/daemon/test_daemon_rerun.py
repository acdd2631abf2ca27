"""`kill -9` of `ferry daemon` (and of its reaper, as `kill -9` of both or the OOM killer would)
mid-step, then the daemon again on the same FERRY_HOME: the run is claimed again (its lease
expired) and the interrupted step runs again from its start, never while its first attempt still
runs.

Cells: a quiet step, a step that daemonizes with `setsid` and `env -i`, a step in a Docker
container; each with the tracking the machine gives (a cgroup per task as root). Each cell
proves the fault is real (the orphaned step beats on after the daemon died) before restarting
the daemon, then checks the beats file (`tests.helpers.beats`) and the server's document.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import beats as bt
from tests.helpers import wait_until
from tests.helpers.reapers import kill_reaper
from tests.integration.daemon.conftest import Server

RESULTS: list[str] = []


def _configure(daemon: Any) -> None:
    """The Docker cell mounts the beats directory: the runner config must allow it. Claims
    held 1 s: the drain at the end waits for the one in flight."""
    path = daemon.home / "config" / "runner.yaml"
    data = yaml.safe_load(path.read_text())
    data["runner"]["containers"] = {"allow_mounts": True}
    data["runner"]["poll_wait"] = 1
    path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize("kind", ["quiet", "daemon", "docker"])
def test_daemon_restart_never_runs_a_step_beside_its_orphan(
        tmp_path: Path, make_daemon: Any, kind: str, request: pytest.FixtureRequest) -> None:
    image = request.getfixturevalue("docker_image") if kind == "docker" else ""
    server = Server(tmp_path / "server", lease_ttl=1, offline_grace=1)
    server.start()
    started = time.monotonic()
    side = tmp_path / "side"
    side.mkdir()
    try:
        server.repo("demo", {"wf.yaml": bt.workflow(kind, image, where=side)})
        run_id = server.submit("demo", "wf.yaml")
        daemon = make_daemon(server)
        daemon.register()
        _configure(daemon)
        daemon.start()
        wait_until(lambda: len(bt.read(side)) >= 3, timeout=60, message="the step to beat")
        first = bt.attempts(bt.read(side))[0]
        orphans = bt.host_pids(bt.read(side), first) if kind != "docker" else set()
        kill_reaper(daemon.proc.pid)
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(10)
        seen = len(bt.read(side))
        wait_until(lambda: len(bt.read(side)) > seen + 2, timeout=10,
                   message="the orphaned step to beat on after the daemon was killed")

        daemon.start()
        wait_until(lambda: len(bt.attempts(bt.read(side))) == 2, timeout=60,
                   message="the step to run again")
        count = len(bt.read(side))
        wait_until(lambda: len(bt.read(side)) > count + 4, timeout=30,
                   message="the second attempt to beat")
        (side / "release").touch()
        wait_until(lambda: server.status(run_id) == "Completed", timeout=60,
                   message="the run to complete")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, daemon.log()[-3000:]
    finally:
        server.kill()
    beats = bt.read(side)
    late = bt.overlap(beats)
    survivors = {pid for pid in orphans if bt.alive(pid)}
    bt.kill_all(survivors)
    verdict = "never concurrent" if not late and not survivors else "CONCURRENT"
    RESULTS.append(f"| {kind} | {verdict} | {time.monotonic() - started:.1f} s |")
    print("\n| step | result | seconds |\n|---|---|---|\n" + "\n".join(RESULTS))
    assert len(bt.attempts(beats)) == 2, "the interrupted step ran again from its start"
    assert not late, f"the first attempt beat on beside the second: {late[:5]}"
    assert not survivors
    if kind != "docker":
        stopped = [e for e in daemon.events() if e.get("event") == "leftovers_stopped"]
        assert stopped, daemon.log()[-3000:]
    assert not list((daemon.home / "data" / "work").glob("*/tasks/*.procs")), \
        "a task ledger was left behind"
