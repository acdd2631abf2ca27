"""`ferry prune` through the real CLI: which runs' files go and which stay, by a table of every
kind of run a machine holds (local runs finished, paused, executing; daemon runs with delivered,
undelivered and stranded journals), old and recent, with `--keep`, `--dry-run` and `--json`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import IN_CI, wait_until
from tests.helpers.runfiles import DAY, daemon_run_files
from tests.integration.local.conftest import REPO, Ferry

HELLO = str(REPO / "examples" / "hello.yaml")
GATE = str(REPO / "examples" / "approval-gate.yaml")


def _age_local(ferry: Ferry, run_id: str, days: float) -> None:
    """Make a finished local run look as if it ended `days` ago (its row's ended_at)."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - days * DAY))
    with sqlite3.connect(ferry.db) as conn:
        conn.execute("UPDATE runs SET ended_at = ?, created_at = ? WHERE id = ?",
                     (ts, ts, run_id))


def _files(home: Path, run_id: str) -> dict[str, bool]:
    data = home / "data"
    return {"work": (data / "work" / run_id).exists(), "logs": (data / "logs" / run_id).exists(),
            "lock": (data / "locks" / f"{run_id}.lock").exists(),
            "journal": (data / "journal" / f"{run_id}.jsonl").exists()}


def _prune(ferry: Ferry, *args: str) -> dict[str, Any]:
    proc = ferry("prune", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def _kept(report: dict[str, Any]) -> dict[str, str]:
    return {run: reason for reason, runs in report["kept"].items() for run in runs}


@pytest.fixture
def machine(ferry: Ferry, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """One FERRY_HOME holding every kind of run, and a live `ferry run` executing one."""
    runs: dict[str, str] = {}
    for name, days in (("local-old", 40), ("local-recent", 2), ("local-older", 60)):
        proc = ferry("run", "-w", HELLO)
        assert proc.returncode == 0, proc.stderr
        runs[name] = ferry.run_id(proc.stdout)
        _age_local(ferry, runs[name], days)
    proc = ferry("run", "-w", GATE)
    assert proc.returncode == 3
    runs["local-paused"] = ferry.run_id(proc.stdout)
    _age_local(ferry, runs["local-paused"], 90)
    runs["daemon-acked-old"] = daemon_run_files(ferry.home, "acked", 45)
    runs["daemon-acked-recent"] = daemon_run_files(ferry.home, "acked", 1)
    runs["daemon-pending-old"] = daemon_run_files(ferry.home, "pending", 45)
    runs["daemon-lost-old"] = daemon_run_files(ferry.home, "lost", 45)
    gate, started = tmp_path / "release", tmp_path / "started"
    wf = tmp_path / "wait.yaml"
    wf.write_text('version: "1"\nnodes:\n  - id: wait\n    steps:\n'
                  f'      - run: touch {started}; while [ ! -e {gate} ]; do sleep 0.05; done\n')
    live = ferry.popen("run", "-w", str(wf))
    # the step runs only after `ferry run` holds the run's lock
    wait_until(started.exists, timeout=60, message="the live run's step")
    runs["local-executing"] = next(p.name[:-5] for p in (ferry.home / "data" / "locks").glob(
        "*.lock") if p.name[:-5] not in runs.values())
    yield {"runs": runs, "live": live, "gate": gate}
    gate.touch()
    live.wait(30)


EXPECTED_30D = {
    "local-old": "removed", "local-older": "removed", "local-recent": "too recent",
    "local-paused": "not finished", "local-executing": "executing",
    "daemon-acked-old": "removed", "daemon-acked-recent": "too recent",
    "daemon-pending-old": "undelivered journal", "daemon-lost-old": "undelivered journal",
}


def test_prune_matrix_older_than_30d(ferry: Ferry, machine: dict[str, Any]) -> None:
    runs = machine["runs"]
    before = {name: _files(ferry.home, rid) for name, rid in runs.items()}
    dry = _prune(ferry, "--older-than", "30d", "--dry-run")
    assert {name: _files(ferry.home, rid) for name, rid in runs.items()} == before, \
        "--dry-run removed files"
    report = _prune(ferry, "--older-than", "30d")
    assert dry["removed"] == report["removed"] and dry["dry_run"] and not report["dry_run"]
    removed = {r["run_id"] for r in report["removed"]}
    kept = _kept(report)
    rows = []
    for name, rid in runs.items():
        got = "removed" if rid in removed else kept.get(rid, "untouched")
        left = _files(ferry.home, rid)
        rows.append((name, EXPECTED_30D[name], got, left))
    print("\n".join(f"{n:22} expected={e:20} got={g:20} files={f}" for n, e, g, f in rows))
    for name, expected, got, left in rows:
        assert got == expected, name
        if expected == "removed":
            assert not any(left.values()), (name, left)
        else:
            assert left == before[name], (name, "a kept run's files changed")
    # the database keeps every run record: `ferry list` still shows the pruned runs
    listed = json.loads(ferry("list", "--json", "--limit", "50").stdout)
    assert runs["local-old"] in {r["id"] for r in listed}


def test_keep_n_keeps_the_newest_finished(ferry: Ferry, machine: dict[str, Any]) -> None:
    runs = machine["runs"]
    report = _prune(ferry, "--keep", "2")  # no age limit: all but the 2 newest finished
    kept = _kept(report)
    newest = {runs["daemon-acked-recent"], runs["local-recent"]}
    assert {r for r, why in kept.items() if why == "among the newest kept"} == newest
    assert {r["run_id"] for r in report["removed"]} == {
        runs["local-old"], runs["local-older"], runs["daemon-acked-old"]}
    assert kept[runs["local-executing"]] == "executing"


def test_the_executing_run_is_pruned_once_it_finished(ferry: Ferry,
                                                      machine: dict[str, Any]) -> None:
    rid = machine["runs"]["local-executing"]
    assert _kept(_prune(ferry, "--older-than", "0"))[rid] == "executing"
    assert _files(ferry.home, rid)["work"] or _files(ferry.home, rid)["lock"]
    machine["gate"].touch()
    assert machine["live"].wait(30) == 0
    report = _prune(ferry, "--older-than", "0")
    assert rid in {r["run_id"] for r in report["removed"]}
    assert not any(_files(ferry.home, rid).values())


def test_prune_text_output_and_bad_usage(ferry: Ferry) -> None:
    proc = ferry("prune")
    assert proc.returncode == 0 and proc.stdout.strip() == "Nothing to remove.", proc.stdout
    run_id = ferry.run_id(ferry("run", "-w", HELLO).stdout)
    proc = ferry("prune", "--older-than", "0", "--dry-run")
    assert proc.returncode == 0
    assert proc.stdout.startswith("Would remove the files of 1 run(s), ")
    assert f"  - {run_id} (finished " in proc.stdout and "work dir, logs, lock" in proc.stdout
    for bad in (("--older-than", "soon"), ("--keep", "-1")):
        proc = ferry("prune", *bad)
        assert proc.returncode == 2, bad
        assert "Traceback" not in proc.stderr and bad[1] in proc.stderr


def _unremovable(path: Path) -> Callable[[], None]:
    """Make `path` impossible to delete (root: the immutable attribute; others: a read-only
    parent directory); returns the undo."""
    if os.geteuid() != 0:
        path.parent.chmod(0o500)
        return lambda: path.parent.chmod(0o700)
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        message = f"chattr +i does not work here: {done.stderr.strip()}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_file_that_cannot_be_removed_is_named_and_exits_5(ferry: Ferry) -> None:
    run_id = ferry.run_id(ferry("run", "-w", HELLO).stdout)
    stuck = next((ferry.home / "data" / "logs" / run_id).iterdir())
    undo = _unremovable(stuck)
    try:
        proc = ferry("prune", "--older-than", "0")
    finally:
        undo()
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert f"ferry: error: cannot remove {stuck}" in proc.stderr
    assert not (ferry.home / "data" / "work" / run_id).exists()  # the rest was removed
    assert "Traceback" not in proc.stderr
