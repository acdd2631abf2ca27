"""One scheduling pass (`runner.engine.scheduler.plan`) over a run holding a matrix of N items:
the pass that creates the N + 2 tasks, and a pass when nothing changed (what every task end
costs), for N = 1,000 and 10,000.

    python bench/scheduler_pass.py [--repeat 7] [--max-load 1.5] [--quiet-wait 600]

The floor is the least a pass must do: read every task's status and node once (a loop over the
document's tasks). The ratio 10,000 / 1,000 shows whether a pass stays linear. Median of
`--repeat` passes. Prints a table and writes bench/results/scheduler_pass.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import add_quiet_options, load_note, publish, wait_for_quiet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.diff import apply_ops
from runner.document import new_run
from runner.engine.scheduler import plan
from runner.workflow.model import Workflow

RESULTS = Path(__file__).resolve().parent / "results" / "scheduler_pass.md"
SIZES = (1_000, 10_000)


def matrix_workflow(items: int) -> Workflow:
    """A matrix node of `items` items and one node after it."""
    return Workflow.model_validate({"version": "1", "nodes": [
        {"id": "m", "strategy": {"type": "matrix", "values": [{"i": i} for i in range(items)]},
         "steps": [{"run": "true"}]},
        {"id": "after", "depends_on": ["m"], "steps": [{"run": "true"}]}]})


def median_ms(fn: Any, repeat: int) -> float:
    """Median wall milliseconds of `repeat` calls of fn()."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def measure(items: int, repeat: int) -> tuple[float, float, float]:
    """(creating pass ms, steady pass ms, floor ms) for a matrix of `items` items."""
    wf = matrix_workflow(items)
    counter = itertools.count()
    ids = lambda: f"t{next(counter):07d}"  # noqa: E731
    empty = new_run({}, name="bench", params={}, created_at="2024-01-01T00:00:00Z")
    create = median_ms(lambda: plan(wf, empty, ids), repeat)
    doc = new_run({}, name="bench", params={}, created_at="2024-01-01T00:00:00Z")
    apply_ops(doc, plan(wf, doc, ids).ops)
    steady = median_ms(lambda: plan(wf, doc, ids), repeat)
    floor = median_ms(lambda: [(t["status"], t["node_id"]) for t in doc["tasks"].values()],
                      repeat)
    return create, steady, floor


def main() -> int:
    """Measure both sizes, print and record the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    add_quiet_options(parser)
    args = parser.parse_args()
    load, waited = wait_for_quiet(args.max_load, args.quiet_wait)
    rows = [(n, *measure(n, args.repeat)) for n in SIZES]
    lines = ["# scheduler_pass: one scheduling pass over a run with a matrix of N items", "",
             f"Machine: {platform.system()} {platform.release()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}. {load_note(load, waited, args.max_load)}",
             f"Median of {args.repeat} passes.", "",
             "| items | pass creating the tasks (ms) | pass, nothing changed (ms) "
             "| floor: read each task once (ms) | steady / floor |", "|---|---|---|---|---|"]
    for n, create, steady, floor in rows:
        lines.append(f"| {n:,} | {create:.1f} | {steady:.1f} | {floor:.2f} "
                     f"| {steady / floor:.0f}x |")
    (_, c1, s1, _), (_, c2, s2, _) = rows
    lines += ["", f"10,000 / 1,000: creating pass {c2 / c1:.1f}, steady pass {s2 / s1:.1f} "
                  "(linear = 10)."]
    publish("\n".join(lines) + "\n", RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
