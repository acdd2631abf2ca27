"""What the reaper (`runner/cli/reaper.py`) costs a run's start: `ferry run` of a one-step
workflow, from spawn to the step's start (the step writes the time) and to exit (output to files,
as on a terminal: nobody waits for the reaper), with the reaper and with its start replaced by
nothing (the peer, in the same run, rounds interleaved); plus, in this process, how long
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
WORKFLOW = ('version: "1"\nnodes:\n  - id: a\n    steps:\n      - name: s\n'
            '        run: "date +%s.%N > started"\n')
_WITH = "import sys; from runner.cli import main; sys.exit(main(sys.argv[1:]))"
_WITHOUT = ("import sys, runner.cli.reaper as r\n"
            "class Off:\n"
            "    def wait_started(self, timeout=0.0): return True\n"
            "r.start_reaper = lambda settings: Off()\n"
            "from runner.cli import main; sys.exit(main(sys.argv[1:]))")


def one_run(code: str, workflow: Path, home: Path) -> tuple[float, float]:
    """Seconds of one `ferry run`: to its step's start, to its exit."""
    env = {**os.environ, "FERRY_HOME": str(home),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    marker = workflow.parent / "started"
    marker.unlink(missing_ok=True)
    with open(home.with_suffix(".out"), "wb") as out:
        began = time.time()
        done = subprocess.run([sys.executable, "-c", code, "run", "-w", str(workflow)],
                              env=env, cwd=workflow.parent, stdout=out, stderr=out,
                              timeout=120)
        took = time.time() - began
    if done.returncode != 0:
        raise SystemExit(f"ferry run failed: {home.with_suffix('.out').read_text()}")
    return float(marker.read_text()) - began, took


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

    def row(name: str, runs: list[tuple[float, float]]) -> str:
        first, total = [r[0] for r in runs], [r[1] for r in runs]
        return (f"| {name} | {statistics.median(first) * 1000:.0f} | {min(first) * 1000:.0f} | "
                f"{statistics.median(total) * 1000:.0f} | {min(total) * 1000:.0f} |")

    def ratio(index: int) -> str:
        a = [r[index] for r in with_reaper]
        b = [r[index] for r in without]
        return (f"{statistics.median(a) / statistics.median(b):.2f}x | "
                f"{min(a) / min(b):.2f}x")
    rows = [
        "# reaper_start: what the reaper costs a run's start",
        "",
        f"Machine: {platform.system()} {platform.release()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. {load_note(load, waited, args.max_load)}",
        "",
        f"`ferry run` of a one-step workflow (`date > started`), {args.rounds} rounds each, "
        "interleaved:",
        "",
        "| variant | to the step's start, median (ms) | best | to exit, median (ms) | best |",
        "|---|---|---|---|---|",
        row("with the reaper", with_reaper),
        row("reaper start replaced by nothing (peer)", without),
        f"| ratio | {ratio(0)} | {ratio(1)} |",
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
