"""`stateManagement.backend: database`: `ferry run`/`resume` processes on different machines
(here: separate FERRY_HOMEs) share runs in one PostgreSQL. Two processes work on different
tasks of the same run, each task runs once; a process that dies leaves its tasks to the other."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from runner.state.database import DatabaseBackend
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[3]

WORKFLOW = """\
version: "1"
params:
  schema:
    gate: {type: string}
    marks: {type: string}
nodes:
  - id: prepare
    steps:
      - run: echo prepare
  - id: shard
    depends_on: [prepare]
    strategy:
      type: matrix
      values: [{item: a}, {item: b}, {item: c}, {item: d}]
    steps:
      - run: |
          touch "${{ params.marks }}/$item.$$"
          while [ ! -f "${{ params.gate }}" ]; do sleep 0.05; done
          echo "shard $item"
  - id: report
    depends_on: [shard]
    steps:
      - run: echo report
"""


def _ferry(home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "FERRY_HOME": str(home), "FERRY_LIVE": "0"}
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _setup(tmp_path: Path, pg_url: str) -> tuple[Path, Path, Path, Path]:
    config = tmp_path / "db.yaml"
    config.write_text(f"stateManagement:\n  backend: database\n  databaseConfig:\n"
                      f"    url: {pg_url}\n")
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(WORKFLOW)
    marks = tmp_path / "marks"
    marks.mkdir()
    return config, workflow, marks, tmp_path / "gate"


def _shards(db: DatabaseBackend) -> dict[str, dict[str, Any]]:
    runs = db.list_runs(limit=5)
    if not runs:
        return {}
    doc = db.load(runs[0].id)
    return {t["matrix"]["item"]: t for t in doc["tasks"].values()
            if t.get("matrix") and not t.get("master")}


def _running(db: DatabaseBackend, count: int) -> bool:
    return sum(t["status"] == "Running" for t in _shards(db).values()) == count


def test_two_processes_work_on_different_tasks_of_one_run(tmp_path: Path, pg_url: str) -> None:
    config, workflow, marks, gate = _setup(tmp_path, pg_url)
    db = DatabaseBackend(pg_url)
    first = _ferry(tmp_path / "home-a", "run", "-c", str(config), "-w", str(workflow),
                   "--max-parallel", "2", "--param", f"gate={gate}", "--param",
                   f"marks={marks}")
    second = None
    try:
        wait_until(lambda: _running(db, 2), timeout=60, message="the first process's 2 shards")
        run_id = db.list_runs(limit=1)[0].id
        second = _ferry(tmp_path / "home-b", "resume", "-i", run_id, "-c", str(config),
                        "--max-parallel", "2")
        wait_until(lambda: _running(db, 4), timeout=60,
                   message="the second process to take the other 2 shards")
        gate.write_text("open")
        out_a, _ = first.communicate(timeout=120)
        out_b, _ = second.communicate(timeout=120)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert first.returncode == 0, out_a
    assert second.returncode == 0, out_b
    doc = db.load(run_id)
    assert doc["status"] == "Completed"
    shards = _shards(db)
    assert all(t["status"] == "Completed" and t["attempt"] == 1 for t in shards.values())
    writers = {t["writer"] for t in shards.values()}
    assert len(writers) == 2, f"one process ran every shard: {writers}"
    assert sorted(p.name.split(".")[0] for p in marks.iterdir()) == ["a", "b", "c", "d"]
    assert db.read_log(run_id, shards["a"]["id"]) == b"shard a\n"
    db.close()


def test_a_process_that_dies_leaves_its_tasks_to_the_other(tmp_path: Path, pg_url: str) -> None:
    config, workflow, marks, gate = _setup(tmp_path, pg_url)
    db = DatabaseBackend(pg_url)
    first = _ferry(tmp_path / "home-a", "run", "-c", str(config), "-w", str(workflow),
                   "--max-parallel", "4", "--param", f"gate={gate}", "--param",
                   f"marks={marks}")
    try:
        wait_until(lambda: _running(db, 4), timeout=60, message="four shards running")
        run_id = db.list_runs(limit=1)[0].id
    finally:
        first.kill()  # SIGKILL: its connection, and with it its writer's lock, goes away
        first.wait(30)
    gate.write_text("open")
    second = _ferry(tmp_path / "home-b", "resume", "-i", run_id, "-c", str(config))
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out
    shards = _shards(db)
    assert all(t["status"] == "Completed" and t["attempt"] == 2 and t["interrupted"] == 1
               for t in shards.values()), shards
    prepare = next(t for t in db.load(run_id)["tasks"].values() if t["node_id"] == "prepare")
    assert prepare["attempt"] == 1  # completed before the crash: not run again
    db.close()


def test_cancel_from_another_machine_stops_the_process_running_the_run(tmp_path: Path,
                                                                       pg_url: str) -> None:
    config, workflow, marks, gate = _setup(tmp_path, pg_url)
    db = DatabaseBackend(pg_url)
    first = _ferry(tmp_path / "home-a", "run", "-c", str(config), "-w", str(workflow),
                   "--max-parallel", "2", "--param", f"gate={gate}", "--param",
                   f"marks={marks}")
    try:
        wait_until(lambda: _running(db, 2), timeout=60, message="two shards running")
        run_id = db.list_runs(limit=1)[0].id
        cancel = _ferry(tmp_path / "home-b", "cancel", "-i", run_id, "-c", str(config))
        out_cancel, _ = cancel.communicate(timeout=120)
        out_run, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert cancel.returncode == 0, out_cancel
    assert first.returncode == 4, out_run  # the run it was executing ended Canceled
    doc = db.load(run_id)
    assert doc["status"] == "Canceled"
    shards = _shards(db)
    running = [t for t in shards.values() if t.get("attempt")]
    assert len(running) == 2 and all(t.get("canceled") for t in running), shards
    assert all(t["status"] == "WontDo" for t in shards.values() if not t.get("attempt"))
    # the run ended once its running tasks had stopped, not when the cancel was asked for
    assert doc["ended_at"] >= max(t["ended_at"] for t in running), (doc["ended_at"], running)
    db.close()
