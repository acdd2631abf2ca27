"""Scale: a matrix of N `true` tasks through the real CLI (`ferry run --max-parallel 8`):
wall time, tasks/s, peak RSS of the ferry process, database size, and the 10k/1k time ratio.

    python bench/engine_scale.py [--sizes 1000 10000] [--max-parallel 8]

Prints a table and writes bench/results/engine_scale.md. Targets: 10k/1k ratio <= 12 (linear),
peak RSS < 300 MB at 10k.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import add_quiet_options, load_note, publish, wait_for_quiet

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "engine_scale.md"


def workflow(n: int) -> str:
    """A one-node workflow whose matrix has `n` items (JSON is valid YAML and quick to load)."""
    return json.dumps({"version": "1", "name": f"scale-{n}", "nodes": [{
        "id": "work", "strategy": {"type": "matrix", "values": [{"i": i} for i in range(n)]},
        "steps": [{"name": "noop", "run": "true"}]}]})


def measure(n: int, max_parallel: int) -> dict[str, float]:
    """Run one matrix of `n` tasks in a fresh FERRY_HOME; wall, RSS (wait4) and db size."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        wf = root / "scale.json"
        wf.write_text(workflow(n))
        env = {**os.environ, "FERRY_HOME": str(root / "home"),
               "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "runner", "run", "-w", str(wf),
                                 "--max-parallel", str(max_parallel), "--workdir", str(root)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"scale run of {n} failed ({proc.returncode}): {err}")
        data = root / "home" / "data"
        db_bytes = sum(p.stat().st_size for p in data.glob("ferry.db*"))
        # ru_maxrss (KiB on Linux) is the largest of ferry and its reaped steps: ferry's own.
        return {"n": n, "wall": wall, "rss_mb": usage.ru_maxrss / 1024,
                "db_mb": db_bytes / 1e6}


def main() -> int:
    """Run the sizes, print and record the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--max-parallel", type=int, default=8)
    add_quiet_options(parser)
    args = parser.parse_args()
    quiet = wait_for_quiet(args.max_load, args.quiet_wait)
    rows = [measure(n, args.max_parallel) for n in args.sizes]
    lines = [f"# engine_scale: matrix of `true` tasks, `ferry run --max-parallel "
             f"{args.max_parallel}`", "",
             f"Machine: {platform.system()} {platform.release()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}. {load_note(*quiet, args.max_load)}", "",
             "| tasks | wall (s) | tasks/s | peak RSS (MB) | database (MB) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['wall']:.1f} | {r['n'] / r['wall']:.0f} "
                     f"| {r['rss_mb']:.0f} | {r['db_mb']:.1f} |")
    if len(rows) >= 2:
        small, big = rows[0], rows[-1]
        ratio = big["wall"] / small["wall"]
        ideal = big["n"] / small["n"]
        lines += ["", f"{big['n']:,}/{small['n']:,} time ratio: {ratio:.1f} (linear = "
                  f"{ideal:.0f}; target <= {ideal * 1.2:.0f}: "
                  f"{'met' if ratio <= ideal * 1.2 else 'MISSED'}). Peak RSS at "
                  f"{big['n']:,}: {big['rss_mb']:.0f} MB (target < 300 MB: "
                  f"{'met' if big['rss_mb'] < 300 else 'MISSED'})."]
    text = "\n".join(lines) + "\n"
    publish(text, RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
