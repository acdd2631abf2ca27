"""What the reaper (`runner/cli/reaper.py`) costs a run's start: `ferry run` of a one-step
workflow, wall time from spawn to exit, with the reaper and with its start replaced by nothing
(the peer, in the same run, rounds interleaved), plus, in this process, how long
`start_reaper()` holds the caller and how long `wait_started()` then waits (the run's first step
waits for it).

    python bench/reaper_start.py [--rounds 15]

Prints a table and writes bench/results/reaper_start.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import add_quiet_options, load_note, publish, wait_for_quiet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = Path(__file__).resolve().parent / "results" / "reaper_start.md"
WORKFLOW = 'version: "1"\nnodes:\n  - id: a\n    steps:\n      - name: s\n        run: "true"\n'
_WITH = "import sys; from runner.cli import main; sys.exit(main(sys.argv[1:]))"
_WITHOUT = ("import sys, runner.cli.reaper as r\n"
            "class Off:\n"
            "    def wait_started(self, timeout=0.0): return True\n"
            "r.start_reaper = lambda settings: Off()\n"
            "from runner.cli import main; sys.exit(main(sys.argv[1:]))")


def one_run(code: str, workflow: Path, home: Path) -> float:
    """Seconds of one `ferry run` (the reaper, when started, exits right after it)."""
    env = {**os.environ, "FERRY_HOME": str(home),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, "run", "-w", str(workflow)], env=env,
                          cwd=workflow.parent, capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ferry run failed: {done.stderr}")
    return took


def in_process(home: Path, rounds: int) -> tuple[list[float], list[float]]:
    """(start_reaper() seconds, wait_started() seconds right after it), one reaper each."""
    from runner.cli.reaper import Reaper, ReaperSettings

    starts, waits = [], []
    for i in range(rounds):
        began = time.perf_counter()
        reaper = Reaper(ReaperSettings(home / f"w{i}", 5.0))
        mid = time.perf_counter()
        reaper.wait_started()
        starts.append(mid - began)
        waits.append(time.perf_counter() - mid)
    return starts, waits


def main() -> None:
    """Measure, print, write the results file."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    add_quiet_options(parser)
    args = parser.parse_args()
    load, waited = wait_for_quiet(args.max_load, args.quiet_wait)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        workflow = root / "wf.yaml"
        workflow.write_text(WORKFLOW)
        with_reaper, without = [], []
        for i in range(args.rounds):
            with_reaper.append(one_run(_WITH, workflow, root / f"a{i}"))
            without.append(one_run(_WITHOUT, workflow, root / f"b{i}"))
        starts, waits = in_process(root / "p", args.rounds)
    med_with, med_without = statistics.median(with_reaper), statistics.median(without)
    rows = [
        "# reaper_start: what the reaper costs a run's start",
        "",
        f"Machine: {platform.system()} {platform.release()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. {load_note(load, waited, args.max_load)}",
        "",
        f"`ferry run` of a one-step workflow (`true`), {args.rounds} rounds each, interleaved:",
        "",
        "| variant | median (ms) | best (ms) |",
        "|---|---|---|",
        f"| with the reaper | {med_with * 1000:.0f} | {min(with_reaper) * 1000:.0f} |",
        f"| reaper start replaced by nothing (peer) | {med_without * 1000:.0f} | "
        f"{min(without) * 1000:.0f} |",
        f"| ratio | {med_with / med_without:.2f}x | {min(with_reaper) / min(without):.2f}x |",
        "",
        "In one process: `start_reaper()` (the caller's cost: a pipe and a thread) median "
        f"{statistics.median(starts) * 1e6:.0f} us; `wait_started()` called right after it "
        f"(the reaper's fork and exec, which a run overlaps with its own start) median "
        f"{statistics.median(waits) * 1000:.1f} ms, max {max(waits) * 1000:.1f} ms.",
        "",
    ]
    publish("\n".join(rows), RESULTS)


if __name__ == "__main__":
    main()
