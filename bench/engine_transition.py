"""Per transition: milliseconds and bytes written per task status change in the local backend
(one diff = one SQLite transaction), for `synchronous=NORMAL` (the default) and `FULL`, in a run
that already holds N tasks.

    python bench/engine_transition.py [--tasks 1000] [--changes 2000]

Bytes are what the process handed to write(2)/pwrite(2) (`wchar` in /proc/self/io: WAL frames,
checkpoints, the database file), divided by the number of changes. The floor is the same number
of bare `INSERT`s of the same diff text, one autocommit transaction each, on a plain table.
Prints a table and writes bench/results/engine_transition.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from benchlib import add_quiet_options, load_note, publish, wait_for_quiet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.diff import Diff
from runner.document import add_task_op, new_run, new_task, task_field_op
from runner.state.local import LocalBackend

RESULTS = Path(__file__).resolve().parent / "results" / "engine_transition.md"
STATUSES = ("Running", "Completed")


def written() -> int:
    """Bytes this process has passed to write calls so far."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def backend_case(root: Path, tasks: int, changes: int, sync: str) -> tuple[float, float]:
    """ms and bytes per status change through LocalBackend.apply."""
    backend = LocalBackend(root / f"{sync}.db", root / "logs", synchronous=sync)
    doc = new_run({"version": "1", "nodes": []}, name="t", params={}, created_at="now")
    backend.create_run(doc)
    backend.apply(Diff(doc["id"], "setup", 1,
                       [add_task_op(new_task("n", task_id=f"t{i}")) for i in range(tasks)]))
    diffs = [Diff(doc["id"], "w", i + 1,
                  [task_field_op(f"t{i % tasks}", "status", STATUSES[i // tasks % 2])],
                  ts="2024-01-01T00:00:00.000Z")
             for i in range(changes)]
    before, start = written(), time.perf_counter()
    for diff in diffs:
        backend.apply(diff)
    took, nbytes = time.perf_counter() - start, written() - before
    backend.close()
    return 1000 * took / changes, nbytes / changes


def floor_case(root: Path, changes: int, sync: str) -> tuple[float, float]:
    """ms and bytes per bare INSERT of a diff-sized row, WAL, one transaction each."""
    conn = sqlite3.connect(root / f"floor-{sync}.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    body = json.dumps([task_field_op("3f0c9c3e-0000-4000-8000-000000000000", "status",
                                     "Running")])
    before, start = written(), time.perf_counter()
    for _ in range(changes):
        conn.execute("INSERT INTO t (body) VALUES (?)", (body,))
    took, nbytes = time.perf_counter() - start, written() - before
    conn.close()
    return 1000 * took / changes, nbytes / changes


def main() -> int:
    """Run both modes, print and record the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=2000)
    add_quiet_options(parser)
    args = parser.parse_args()
    quiet = wait_for_quiet(args.max_load, args.quiet_wait)
    rows = []
    for sync in ("NORMAL", "FULL"):
        with tempfile.TemporaryDirectory() as tmp:
            ms, nbytes = backend_case(Path(tmp), args.tasks, args.changes, sync)
            fms, fbytes = floor_case(Path(tmp), args.changes, sync)
        rows.append((sync, ms, nbytes, fms, fbytes))
    lines = [f"# engine_transition: one task status change = one diff = one transaction "
             f"({args.tasks:,} tasks in the run, {args.changes:,} changes)", "",
             f"Machine: {platform.system()} {platform.release()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}, ext4. {load_note(*quiet, args.max_load)}", "",
             "| synchronous | ms / change | bytes written / change | floor ms (bare INSERT) "
             "| floor bytes | time ratio |", "|---|---|---|---|---|---|"]
    for sync, ms, nbytes, fms, fbytes in rows:
        lines.append(f"| {sync} | {ms:.3f} | {nbytes:,.0f} | {fms:.3f} | {fbytes:,.0f} "
                     f"| {ms / fms:.2f} |")
    text = "\n".join(lines) + "\n"
    publish(text, RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
