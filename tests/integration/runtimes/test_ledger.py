"""Task ledgers: read back whatever a kill left, ended only when their writer is dead (a sweep
never touches a live runner's steps), void after a reboot; and the tracking this machine gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from runner.cli.leftovers import TRACKING_VAR, end_leftover_processes, tracking_from
from runner.errors import ConfigError
from runner.runtimes.cgroup import CgroupError, TaskCgroup, remove_stale
from runner.runtimes.ledger import Ledger, boot_id, boottime, read, sweep
from runner.runtimes.tracking import CgroupHome, Tracking
from tests.helpers import IN_CI, wait_until
from tests.helpers.beats import alive


def _sleeper() -> tuple[subprocess.Popen[bytes], float]:
    at = boottime()
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    return proc, at


def test_a_torn_or_damaged_line_is_counted_and_the_rest_is_read(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "t.procs", "direct")
    ledger.record(step="m1", pid=123, at=1.5)
    ledger.record(cgroup="/sys/fs/cgroup/x")
    ledger.close(keep=True)
    with open(tmp_path / "t.procs", "a") as fh:
        fh.write('{"whatever": 1}\n{"step": "m2", "pid": 4')  # unknown record, torn last line
    rec = read(tmp_path / "t.procs")
    assert rec is not None
    assert (rec.runtime, rec.owner, rec.boot) == ("direct", os.getpid(), boot_id())
    assert [s.marker for s in rec.steps] == ["m1"] and rec.cgroups == ["/sys/fs/cgroup/x"]
    assert rec.damaged == 2
    assert read(tmp_path / "missing.procs") is None
    assert oct((tmp_path / "t.procs").stat().st_mode & 0o777) == "0o600"


def test_sweep_skips_a_live_owner_and_ends_a_dead_ones_steps(tmp_path: Path) -> None:
    mine, mine_at = _sleeper()
    theirs, theirs_at = _sleeper()
    try:
        live = Ledger(tmp_path / "live.procs", "direct")  # written by this (live) process
        live.record(step=uuid.uuid4().hex, pid=mine.pid, at=mine_at)
        live.close(keep=True)
        dead = tmp_path / "dead.procs"  # its writer's pid is above pid_max: never alive
        dead.write_text(json.dumps({"v": 1, "runtime": "direct", "owner": 1 << 22,
                                    "owner_start": 1, "boot": boot_id()}) + "\n" +
                        json.dumps({"step": uuid.uuid4().hex, "pid": theirs.pid,
                                    "at": theirs_at}) + "\n")
        said: list[str] = []
        ended, failed = end_leftover_processes([tmp_path / "live.procs", dead], 1.0,
                                               say=said.append, warn=said.append)
        assert (ended, failed) == (1, 0), said
        assert alive(mine.pid), "a live runner's step was touched"
        wait_until(lambda: theirs.poll() is not None, message="the dead runner's step to end")
        assert not dead.exists() and (tmp_path / "live.procs").exists()
        assert said == [f"stopped 1 leftover process of interrupted task dead (run "
                        f"{tmp_path.parent.name})"]
    finally:
        for proc in (mine, theirs):
            proc.kill()
            proc.wait()


def test_records_of_another_boot_are_void(tmp_path: Path) -> None:
    proc, at = _sleeper()
    try:
        path = tmp_path / "old.procs"
        path.write_text(json.dumps({"v": 1, "owner": 1 << 22, "boot": "another-boot"}) + "\n" +
                        json.dumps({"step": "m", "pid": proc.pid, "at": at}) + "\n")
        results = sweep([path], 0.2)
        assert [r.clean for r in results] == [True] and results[0].stopped == 0
        assert proc.poll() is None, "a pid of another boot names another process"
        assert not path.exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_reused_pid_is_not_the_step(tmp_path: Path) -> None:
    """The recorded main process's pid now names a process that started later: spared."""
    proc, _ = _sleeper()
    try:
        path = tmp_path / "reused.procs"
        path.write_text(json.dumps({"v": 1, "owner": 1 << 22, "boot": boot_id()}) + "\n" +
                        json.dumps({"step": "m", "pid": proc.pid, "at": boottime() - 60}) + "\n")
        assert [r.stopped for r in sweep([path], 0.2)] == [0]
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_tracking_setting() -> None:
    assert tracking_from({}, "session") == Tracking.SESSION
    assert tracking_from({TRACKING_VAR: "cgroup"}, "session") == Tracking.CGROUP
    with pytest.raises(ConfigError, match="FERRY_PROCESS_TRACKING='cgroups': expected one of "
                                          "auto, cgroup, session"):
        tracking_from({TRACKING_VAR: "cgroups"})


def test_root_gets_a_cgroup_per_task() -> None:
    """What CI runs as: the cgroup tracking must be in use there, not silently the fallback."""
    home = CgroupHome(Tracking.AUTO)
    if os.geteuid() != 0 and not IN_CI:
        pytest.skip("only root is sure to get a cgroup")
    assert home.parent() is not None, home.describe()
    assert home.describe().startswith("a cgroup per task under ")
    assert CgroupHome(Tracking.SESSION).parent() is None


def test_ferry_run_leaves_no_ledger_or_cgroup(tmp_path: Path) -> None:
    home = tmp_path / "home"
    wf = tmp_path / "wf.yaml"
    wf.write_text('version: "1"\nnodes:\n  - id: a\n    steps:\n      - run: sleep 30 &\n')
    env = {**os.environ, "FERRY_HOME": str(home)}

    def ferry(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "runner", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    out = ferry("run", "-w", str(wf))
    run_id = out.split("Workflow started with ID: ")[1].split()[0]
    doc = json.loads(ferry("status", "-i", run_id, "--json"))
    assert list((home / "data" / "work").glob("*/tasks/*.procs")) == []
    parent = CgroupHome(Tracking.AUTO).parent()
    if parent is not None:
        for task_id in doc["tasks"]:
            assert list(parent.glob(f"ferry-{task_id}-*")) == [], "the task's cgroup was left"


def _populated(parent: Path, name: str, pid: int) -> TaskCgroup:
    """A cgroup named as a dead runner's, holding `pid`. Any other Ferry process sweeping the
    same parent (a reaper or daemon of another test) may remove it between the empty create
    and the add, as it should: then it is made again."""
    for _ in range(20):
        cgroup = TaskCgroup.create(parent, name)
        try:
            cgroup.add(pid)
            return cgroup
        except CgroupError:
            if cgroup.path.exists():
                raise
    raise AssertionError(f"{parent / name} was removed before a process could enter it, 20 times")


def test_empty_cgroups_of_dead_runners_are_removed() -> None:
    """A runner killed with SIGKILL leaves its task cgroups; the next one removes the empty
    ones, never a live runner's and never one that still holds processes."""
    parent = CgroupHome(Tracking.AUTO).parent()
    if parent is None:
        if IN_CI:
            pytest.fail("CI runs as root: it must have cgroups")
        pytest.skip("no writable cgroup v2 here")
    dead = subprocess.Popen(["true"])
    dead.wait()
    tag = uuid.uuid4().hex[:8]
    stale = TaskCgroup.create(parent, f"ferry-t{tag}-{dead.pid}-{tag}")
    live = TaskCgroup.create(parent, f"ferry-t{tag}-{os.getpid()}-{tag}")
    sleeper = subprocess.Popen(["sleep", "300"])
    busy = _populated(parent, f"ferry-u{tag}-{dead.pid}-{tag}", sleeper.pid)
    try:
        remove_stale(parent)
        assert not stale.path.exists()
        assert live.path.exists() and busy.path.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
        wait_until(lambda: not busy.populated(), message="the sleeper to leave its cgroup")
        for cgroup in (live, busy):
            cgroup.remove()
