"""`kill -9` of `ferry run` and of its reaper mid-step, then `ferry resume`: the interrupted step
runs again from its start, and never while its first attempt still runs. (With the reaper alive
the steps die with `ferry run`: tests/integration/daemon/test_runner_killed.py; here it is
killed first, as `kill -9` of both or the OOM killer would, so that `ferry resume` finds the
orphans.)

The matrix: step kinds (`tests.helpers.beats`: a quiet step, a step that daemonizes with
`setsid` and `env -i`, a step in a Docker container) x process tracking (a cgroup per task,
or sessions and markers). Each cell kills the real `ferry run` process with SIGKILL while the
step beats, checks that the orphaned step does beat on (the fault is real), resumes, and checks
the beats file: no line of the first attempt after the first line of the second, and no
process of the first attempt alive. One cell is the documented limit of the session fallback:
the daemonized `env -i` child escapes it (README "Reliability"); the test checks that it does,
so the README stays true.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import beats as bt
from tests.helpers import wait_until
from tests.helpers.reapers import kill_reaper
from tests.integration.local.conftest import Ferry

CELLS = [  # (step kind, tracking, expected)
    ("quiet", "cgroup", "never concurrent"),
    ("daemon", "cgroup", "never concurrent"),
    ("quiet", "session", "never concurrent"),
    ("daemon", "session", "daemon escapes"),
    ("docker", "auto", "never concurrent"),
]
RESULTS: list[str] = []


def _crash(ferry: Ferry, kind: str, env: dict[str, str], tmp_path: Path) -> str:
    """`ferry run` the step, SIGKILL its reaper and then ferry (only ferry: the step has its
    own session) while the step beats, see the orphan beat on; the run id."""
    wf = tmp_path / "beat.yaml"
    image = "ferry-test/busybox:1"
    wf.write_text(bt.workflow(kind, image))
    proc = subprocess.Popen(ferry.argv("run", "-w", str(wf)), env=env, cwd=ferry.workdir,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_until(lambda: len(bt.read(ferry.workdir)) >= 3 or proc.poll() is not None,
                   timeout=60, message="the step to beat")
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        kill_reaper(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = proc.stdout.read() if proc.stdout else ""
    assert proc.stdout is not None
    proc.stdout.close()
    seen = len(bt.read(ferry.workdir))
    wait_until(lambda: len(bt.read(ferry.workdir)) > seen + 2, timeout=10,
               message="the orphaned step to beat on after ferry was killed")
    return ferry.run_id(out)


@pytest.mark.parametrize(("kind", "tracking", "expected"), CELLS,
                         ids=[f"{k}-{t}" for k, t, _ in CELLS])
def test_resume_never_runs_a_step_beside_its_orphan(ferry: Ferry, tmp_path: Path, kind: str,
                                                     tracking: str, expected: str,
                                                     request: pytest.FixtureRequest) -> None:
    if kind == "docker":
        request.getfixturevalue("docker_image")
    env = {**ferry.env, "FERRY_PROCESS_TRACKING": tracking}
    started = time.monotonic()
    run_id = _crash(ferry, kind, env, tmp_path)
    first = bt.attempts(bt.read(ferry.workdir))
    assert len(first) == 1
    orphans = bt.host_pids(bt.read(ferry.workdir), first[0]) if kind != "docker" else set()
    resumed = subprocess.Popen(ferry.argv("resume", "-i", run_id), env=env, cwd=ferry.workdir,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: len(bt.attempts(bt.read(ferry.workdir))) == 2
                   or resumed.poll() is not None, timeout=60, message="the step to run again")
        # Let the second attempt beat a while: an orphan still running would show up now.
        count = len(bt.read(ferry.workdir))
        wait_until(lambda: len(bt.read(ferry.workdir)) > count + 4 or resumed.poll() is not None,
                   timeout=30, message="the second attempt to beat")
        (ferry.workdir / "release").touch()
        out, err = resumed.communicate(timeout=60)
    finally:
        if resumed.poll() is None:
            resumed.kill()
            resumed.wait()
    beats = bt.read(ferry.workdir)
    late = bt.overlap(beats)
    survivors = {pid for pid in orphans if bt.alive(pid)}
    escaped = sorted({b.role for b in late})
    bt.kill_all(survivors)
    verdict = "never concurrent" if not late and not survivors else (
        "daemon escapes" if escaped == ["daemon"] else f"CONCURRENT: {escaped}")
    RESULTS.append(f"| {kind} | {tracking} | {verdict} | {time.monotonic() - started:.1f} s |")
    print("\n| step | tracking | result | seconds |\n|---|---|---|---|\n" + "\n".join(RESULTS))
    assert resumed.returncode == 0, out + err
    assert len(bt.attempts(beats)) == 2, "the interrupted step ran again from its start"
    assert verdict == expected, f"late beats of the first attempt: {late[:5]}"
    if expected == "never concurrent" and kind != "docker":
        assert "leftover process" in err, err
