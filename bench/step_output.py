"""Step output throughput: a step `cat`s N MiB through the executor (DirectRuntime, LocalBackend
writing the task log, `StepOutput` splitting lines) against `cat` of the same file to /dev/null
(the floor: reading the bytes at all) and `cat file | cat > log` (a pipe into a file, what the
runner must do at least).

    python bench/step_output.py [--mib 100] [--repeat 3]

Shapes: one line without a newline, `\\r` progress updates, 80-byte lines. Each Ferry round runs
in its own process, whose peak RSS is reported (getrusage). Prints the table and writes
bench/results/step_output.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import add_quiet_options, load_note, publish, wait_for_quiet

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "step_output.md"
SHAPES = ("no-newline", "cr-progress", "80-byte-lines")
BEFORE = ("Before `StepOutput` (the engine appended each chunk to one buffer and split all of "
          "it again), this script at 100 MiB, one round, on the same machine under load: "
          "no-newline 91 s and 238 MiB peak RSS, cr-progress 143 s and 238 MiB, "
          "80-byte lines 5.5 s and 36 MiB.")


def write_payload(path: Path, shape: str, size: int) -> int:
    """Write about `size` bytes of `shape` to `path` in 1 MiB blocks; the bytes written."""
    if shape == "no-newline":
        block = bytes(range(32, 127)) * (2**20 // 95)
    elif shape == "cr-progress":
        block = b"".join(b"downloading %10d bytes \r" % i for i in range(2**20 // 30))
    else:
        block = b"".join(b"%079d\n" % i for i in range(2**20 // 80))
    written = 0
    with open(path, "wb") as fh:
        while written < size:
            fh.write(block)
            written += len(block)
    return written


def ferry_once(payload: Path) -> dict[str, float]:
    """In this process: one run of one step `cat payload`; wall seconds and peak RSS (MiB)."""
    sys.path.insert(0, str(ROOT))
    from runner.engine.executor import Executor, ExecutorSettings
    from runner.paths import Paths
    from runner.runtimes.direct import DirectRuntime
    from runner.state.local import LocalBackend
    from runner.workflow.model import Workflow

    workflow = Workflow.model_validate({"version": "1", "name": "out", "nodes": [
        {"id": "out", "steps": [{"name": "cat", "run": f"cat '{payload}'"}]}]})
    with tempfile.TemporaryDirectory() as tmp:
        paths = Paths.under(Path(tmp)).ensure()
        backend = LocalBackend(paths.db_path, paths.logs_dir)
        executor = Executor(backend, {"direct": DirectRuntime(os.environ)},
                            ExecutorSettings(writer="bench", max_parallel=1,
                                             workspace=Path(tmp), control_root=paths.work_dir,
                                             env=os.environ))
        run_id = executor.create_run(workflow, params={}, name="out")
        start = time.perf_counter()
        status = executor.execute(run_id, threading.Event())
        took = time.perf_counter() - start
        logged = sum(p.stat().st_size for p in paths.logs_dir.rglob("*.log"))
        backend.close()
    if str(status) != "Completed" or logged != payload.stat().st_size:
        raise SystemExit(f"bench run ended {status}, logged {logged} bytes")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall": took, "rss_mib": peak}


def timed(argv: list[str], shell: bool = False) -> float:
    """Wall seconds of one command."""
    start = time.perf_counter()
    subprocess.run(argv if not shell else argv[0], shell=shell, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(shape: str, size: int, repeat: int) -> dict[str, float]:
    """Best-of `repeat` for the floor, the pipe-to-file peer and Ferry (each in a child)."""
    with tempfile.TemporaryDirectory() as tmp:
        payload = Path(tmp) / "payload"
        size = write_payload(payload, shape, size)
        log = Path(tmp) / "log"
        floor, pipe, ours, rss = [], [], [], []
        for _ in range(repeat):
            floor.append(timed(["cat", str(payload)]))
            pipe.append(timed([f"cat '{payload}' | cat > '{log}'"], shell=True))
            child = subprocess.run([sys.executable, __file__, "--child", str(payload)],
                                   check=True, capture_output=True, text=True)
            result = json.loads(child.stdout)
            ours.append(result["wall"])
            rss.append(result["rss_mib"])
    mib = size / 2**20
    return {"mib": mib, "floor": mib / min(floor), "pipe": mib / min(pipe),
            "ferry": mib / min(ours), "rss": max(rss), "wall": min(ours)}


def main() -> int:
    """Run every shape, print and record the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    add_quiet_options(parser)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(ferry_once(Path(args.child))))
        return 0
    load, waited = wait_for_quiet(args.max_load, args.quiet_wait)
    rows = {shape: measure(shape, args.mib * 2**20, args.repeat) for shape in SHAPES}
    machine = (f"{platform.system()} {platform.release()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}")
    lines = ["# step_output: step output throughput through the executor", "",
             f"Machine: {machine}. {load_note(load, waited, args.max_load)}", "",
             f"One step `cat`s {args.mib} MiB; best of {args.repeat} rounds each. Floor: `cat` "
             "of the file to /dev/null; peer: `cat file | cat > log` (a pipe into a file). "
             "Ferry: `ferry`'s executor with the host runtime and the local backend (task log "
             "written, lines split for the console), in a fresh process whose peak RSS is "
             "shown.", "",
             "| output | MiB | floor MiB/s | pipe to file MiB/s | ferry MiB/s | ferry s "
             "| ferry / pipe | ferry peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for shape, r in rows.items():
        lines.append(f"| {shape} | {r['mib']:.0f} | {r['floor']:.0f} | {r['pipe']:.0f} "
                     f"| {r['ferry']:.0f} | {r['wall']:.2f} | {r['ferry'] / r['pipe']:.2f} "
                     f"| {r['rss']:.0f} |")
    lines += ["", BEFORE]
    publish("\n".join(lines) + "\n", RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
