"""LocalBackend on real SQLite files: idempotency, gaps, atomic conflicts, snapshots, several
processes, torn and locked databases."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runner.diff import Diff, PatchConflict
from runner.document import (
    RunStatus,
    TaskStatus,
    add_task_op,
    new_run,
    new_task,
    run_field_op,
    state_set_op,
    task_field_op,
)
from runner.errors import SeqGap, StateError, UnknownRun, UsageError
from runner.state.local import LocalBackend, fold
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[3]


def _backend(tmp_path: Path, **kw: Any) -> LocalBackend:
    return LocalBackend(tmp_path / "ferry.db", tmp_path / "logs", **kw)


def _run(backend: LocalBackend, tasks: int = 2, run_id: str | None = None) -> dict[str, Any]:
    doc = new_run({"version": "1", "nodes": []}, name="wf", params={"a": "b"},
                  created_at="2024-01-01T00:00:00Z", run_id=run_id)
    backend.create_run(doc)
    ops = [add_task_op(new_task(f"n{i}", task_id=f"t{i}")) for i in range(tasks)]
    assert backend.apply(Diff(doc["id"], "setup", 1, ops))
    return doc


def _db_dump(db: Path) -> list[Any]:
    with sqlite3.connect(db) as conn:
        return [conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                for t in ("runs", "diffs")]


def test_apply_is_idempotent_per_writer_and_seq(tmp_path: Path) -> None:
    with _backend(tmp_path) as b:
        run = _run(b)
        diff = Diff(run["id"], "w", 1, [state_set_op("items", [])])
        append = Diff(run["id"], "w", 2, [{"op": "add", "path": "/state/items/-", "value": 1}])
        assert b.apply(diff) is True
        assert b.apply(append) is True
        # Redelivery of both (e.g. a journal replay) must not append twice.
        assert b.apply(diff) is False
        assert b.apply(append) is False
        assert b.load(run["id"])["state"]["items"] == [1]
        assert [d.seq for d in b.history(run["id"]) if d.writer == "w"] == [1, 2]


def test_seq_gap_is_refused_and_names_expected(tmp_path: Path) -> None:
    with _backend(tmp_path) as b:
        run = _run(b)
        with pytest.raises(SeqGap) as err:
            b.apply(Diff(run["id"], "w", 2, [state_set_op("x", 1)]))
        assert err.value.expected == 1
        assert b.apply(Diff(run["id"], "w", 1, [state_set_op("x", 1)]))
        with pytest.raises(SeqGap) as err:
            b.apply(Diff(run["id"], "w", 5, [state_set_op("x", 5)]))
        assert err.value.expected == 2
        with pytest.raises(SeqGap):
            b.apply(Diff(run["id"], "other", 0, [state_set_op("x", 0)]))
        assert b.load(run["id"])["state"] == {"x": 1}


def test_conflict_applies_nothing(tmp_path: Path) -> None:
    with _backend(tmp_path) as b:
        run = _run(b)
        before_db = _db_dump(tmp_path / "ferry.db")
        before_doc = b.load(run["id"])
        # First op applies, the second does not: the first must not survive.
        bad = Diff(run["id"], "w", 1, [task_field_op("t0", "status", "Running"),
                                       {"op": "replace", "path": "/tasks/nope/status",
                                        "value": "Running"}])
        with pytest.raises(PatchConflict):
            b.apply(bad)
        assert b.load(run["id"]) == before_doc
        assert _db_dump(tmp_path / "ferry.db") == before_db
        # The writer's seq 1 is still free: the failed diff left no trace.
        assert b.apply(Diff(run["id"], "w", 1, [task_field_op("t0", "status", "Running")]))
        assert b.load(run["id"])["tasks"]["t0"]["status"] == "Running"


def test_caller_cannot_mutate_stored_state_through_op_values(tmp_path: Path) -> None:
    with _backend(tmp_path) as b:
        run = _run(b)
        value = {"k": [1]}
        b.apply(Diff(run["id"], "w", 1, [state_set_op("obj", value)]))
        value["k"].append(2)
        loaded = b.load(run["id"])
        loaded["state"]["obj"]["k"].append(3)
        assert b.load(run["id"])["state"]["obj"] == {"k": [1]}


def test_snapshot_plus_diffs_equals_direct_fold(tmp_path: Path) -> None:
    with _backend(tmp_path, snapshot_every=3) as b:
        run = _run(b, tasks=5)
        seq = 0
        for round_ in range(40):
            for i in range(5):
                seq += 1
                b.apply(Diff(run["id"], "w", seq, [
                    task_field_op(f"t{i}", "attempt", round_),
                    state_set_op(f"k{i}", {"round": round_, "text": "x" * 50})]))
        seq += 1
        b.apply(Diff(run["id"], "w", seq, [run_field_op("status", RunStatus.COMPLETED.value)]))
        direct = fold(b.initial(run["id"]), b.history(run["id"]))
        with sqlite3.connect(tmp_path / "ferry.db") as conn:
            snap_cursor, = conn.execute("SELECT snapshot_cursor FROM runs").fetchone()
        assert snap_cursor > 0, "a snapshot should have been written"
    # A fresh process-like backend has no cache: it reads snapshot + later diffs.
    with _backend(tmp_path) as fresh:
        assert fresh.load(run["id"]) == direct
        assert direct["tasks"]["t4"]["attempt"] == 39
        assert fresh.list_runs()[0].status == "Completed"


def test_snapshots_are_not_rewritten_per_diff(tmp_path: Path) -> None:
    """Total snapshot bytes stay proportional to diff bytes (the linear-cost guarantee)."""
    writes: list[int] = []
    with _backend(tmp_path, snapshot_every=10) as b:
        run = _run(b, tasks=300)
        b.conn.set_trace_callback(
            lambda sql: writes.append(len(sql)) if "SET snapshot" in sql else None)
        for i in range(1500):
            b.apply(Diff(run["id"], "w", i + 1,
                         [task_field_op(f"t{i % 300}", "status", "Running")]))
    # 300 tasks = a ~70 kB document; every 10 diffs would be 150 rewrites, per diff 1500.
    # Half a snapshot's worth of diff bytes (~35 kB of ~70-byte diffs) comes every ~500 diffs.
    assert 1 <= len(writes) <= 5


def _child_writer(db: str, logs: str, run_id: str, writer: str, tasks: list[str],
                  start: Any) -> None:
    start.wait(10)
    backend = LocalBackend(Path(db), Path(logs))
    for seq, task in enumerate(tasks, start=1):
        backend.apply(Diff(run_id, writer, seq, [task_field_op(task, "status", "Completed"),
                                                 task_field_op(task, "attempt", seq)]))
    backend.close()


def test_two_processes_writing_different_tasks_both_survive(tmp_path: Path) -> None:
    with _backend(tmp_path) as b:
        run = _run(b, tasks=80)
        ctx = multiprocessing.get_context("spawn")
        start = ctx.Event()
        halves = [[f"t{i}" for i in range(0, 80, 2)], [f"t{i}" for i in range(1, 80, 2)]]
        procs = [ctx.Process(target=_child_writer,
                             args=(str(tmp_path / "ferry.db"), str(tmp_path / "logs"), run["id"],
                                   f"proc{n}", half, start))
                 for n, half in enumerate(halves)]
        for p in procs:
            p.start()
        start.set()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        # This process's cached document must pick up both processes' writes.
        doc = b.load(run["id"])
        assert all(t["status"] == TaskStatus.COMPLETED for t in doc["tasks"].values())
        # And our own next write builds on theirs, not on a stale cache.
        b.apply(Diff(run["id"], "main", 1, [state_set_op("done", True)]))
    with _backend(tmp_path) as fresh:
        doc = fresh.load(run["id"])
        assert doc["state"] == {"done": True}
        assert sum(t["status"] == "Completed" for t in doc["tasks"].values()) == 80
        writers = {d.writer for d in fresh.history(run["id"])}
        assert writers == {"setup", "proc0", "proc1", "main"}


def test_changes_since_reports_other_writers(tmp_path: Path) -> None:
    with _backend(tmp_path) as a, _backend(tmp_path) as other:
        run = _run(a)
        cursor, _ = a.position(run["id"], "nobody")
        diffs, same = a.changes_since(run["id"], cursor)
        assert diffs == [] and same == cursor
        other.apply(Diff(run["id"], "cli", 1, [run_field_op("cancel_requested", True)]))
        diffs, new = a.changes_since(run["id"], cursor)
        assert [(d.writer, d.seq) for d in diffs] == [("cli", 1)]
        assert new > cursor and diffs[0].meta["cursor"] == new
        assert a.load(run["id"])["cancel_requested"] is True


def test_run_id_prefix_resolution(tmp_path: Path) -> None:
    with _backend(tmp_path) as b:
        r1 = _run(b, run_id="abcd1111-0000-4000-8000-000000000000")
        _run(b, run_id="abcd2222-0000-4000-8000-000000000000")
        assert b.load("abcd1")["id"] == r1["id"]
        assert b.resolve_run_id(r1["id"]) == r1["id"]
        with pytest.raises(UsageError, match="ambiguous"):
            b.load("abcd")
        with pytest.raises(UnknownRun):
            b.load("ffff")
        with pytest.raises(UnknownRun):
            b.load("ab")  # too short to look up


def test_list_runs_newest_first_with_status_filter(tmp_path: Path) -> None:
    with _backend(tmp_path) as b:
        ids = []
        for day in (1, 2, 3):
            doc = new_run({}, name=f"wf{day}", params={},
                          created_at=f"2024-01-0{day}T00:00:00Z")
            b.create_run(doc)
            ids.append(doc["id"])
        b.apply(Diff(ids[1], "w", 1, [run_field_op("status", "Failed")]))
        assert [r.id for r in b.list_runs()] == ids[::-1]
        assert [r.id for r in b.list_runs(limit=1)] == [ids[2]]
        assert [r.id for r in b.list_runs(status="Failed")] == [ids[1]]


def test_logs_append_and_read_from_offset(tmp_path: Path) -> None:
    with _backend(tmp_path) as b:
        run = _run(b)
        assert b.read_log(run["id"], "t0") == b""
        b.append_log(run["id"], "t0", b"one\n")
        b.append_log(run["id"], "t0", b"two\n")
        assert b.read_log(run["id"], "t0") == b"one\ntwo\n"
        assert b.read_log(run["id"], "t0", 4) == b"two\n"
        assert b.log_path(run["id"], "t0") == tmp_path / "logs" / run["id"] / "t0.log"
        with pytest.raises(ValueError):
            b.append_log(run["id"], "../escape", b"x")


def test_database_file_is_private(tmp_path: Path) -> None:
    with _backend(tmp_path):
        pass
    assert stat.S_IMODE(os.stat(tmp_path / "ferry.db").st_mode) == 0o600


def test_torn_database_gives_state_error_naming_file(tmp_path: Path) -> None:
    with _backend(tmp_path) as b:
        for _ in range(30):
            _run(b, tasks=20)
        b.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db = tmp_path / "ferry.db"
    size = db.stat().st_size
    with open(db, "r+b") as fh:  # a torn write: the second half is gone
        fh.truncate(size // 2)
    with pytest.raises(StateError) as err:
        _backend(tmp_path)
    assert str(db) in str(err.value)


def test_garbage_file_gives_state_error(tmp_path: Path) -> None:
    (tmp_path / "ferry.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="corrupt or not a Ferry database"):
        _backend(tmp_path)


def test_lock_held_by_another_process_gives_state_error(tmp_path: Path) -> None:
    with _backend(tmp_path, busy_timeout=0.3) as b:
        run = _run(b)
        holder = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(f"""
                import sqlite3, sys
                conn = sqlite3.connect({str(tmp_path / 'ferry.db')!r}, isolation_level=None)
                conn.execute("BEGIN IMMEDIATE")
                print("locked", flush=True)
                sys.stdin.readline()
            """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None
            wait_until(lambda: holder.stdout.readline().strip() == "locked", timeout=10,
                       message="the other process to take the write lock")
            with pytest.raises(StateError, match="locked by another process"):
                b.apply(Diff(run["id"], "w", 1, [state_set_op("x", 1)]))
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(10)
        # Nothing was lost or half-applied: the same diff goes through once the lock is gone.
        assert b.apply(Diff(run["id"], "w", 1, [state_set_op("x", 1)]))
        assert b.load(run["id"])["state"] == {"x": 1}


def test_create_run_twice(tmp_path: Path) -> None:
    with _backend(tmp_path) as b:
        doc = _run(b)
        fresh = new_run({}, name="wf", params={"a": "b"}, created_at="2024-01-01T00:00:00Z",
                        run_id=doc["id"])
        b.create_run(doc)  # same content: a no-op (redelivery)
        with pytest.raises(StateError, match="already exists"):
            b.create_run(fresh)
        assert json.dumps(b.initial(doc["id"]), sort_keys=True) == json.dumps(doc,
                                                                              sort_keys=True)


def test_position_gives_the_latest_cursor_and_each_writers_last_seq(tmp_path: Path) -> None:
    """Where a writer resumes, from two index lookups rather than the run's whole history."""
    with _backend(tmp_path) as a, _backend(tmp_path) as other:
        run = _run(a)
        for seq in (1, 2, 3):
            other.apply(Diff(run["id"], "proc", seq, [state_set_op("n", seq)]))
        cursor, seq = a.position(run["id"], "proc")
        assert seq == 3
        assert cursor == a.position(run["id"], "nobody")[0]
        assert a.changes_since(run["id"], cursor)[0] == []
        assert a.position(run["id"], "setup")[1] == 1
        assert a.position(run["id"], "never-wrote")[1] == 0
        with pytest.raises(UnknownRun):
            a.position("00000000-no-such-run", "proc")
