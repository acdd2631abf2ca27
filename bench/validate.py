"""Benchmark: validating a large workflow, and `ferry validate` start-up on a small one.

    python bench/validate.py [--runs N]

Generates a 1,000-node DAG with 3,000 depends_on edges and 200 templates (with `use:` steps,
matrix nodes and `${{ tasks.X.outputs.Y }}` references so every check does real work), times
`validate_source` (median of N runs, in process) and the wall time of `ferry validate` on a small
file against the floor `python -c pass` in the same run. Prints a table and writes it to
bench/results/validate.md.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import add_quiet_options, load_note, wait_for_quiet  # noqa: E402

from runner.workflow.validate import validate_source  # noqa: E402

NODES = 1000
EDGES = 3000
TEMPLATES = 200
VALIDATE_TARGET_S = 1.0
STARTUP_TARGET_S = 0.250


def generate(nodes: int = NODES, edges: int = EDGES, templates: int = TEMPLATES) -> str:
    """YAML text of a valid DAG workflow of the requested size (deterministic)."""
    rng = random.Random(42)
    deps: list[set[int]] = [set() for _ in range(nodes)]
    placed = 0
    while placed < edges:
        child = rng.randrange(1, nodes)
        parent = rng.randrange(0, child)  # edges only point backwards: a DAG
        if parent not in deps[child]:
            deps[child].add(parent)
            placed += 1
    out = ['version: "1"', "state:", "  schema:",
           "    - {name: items, type: array}", "templates:"]
    for t in range(templates):
        out += [f"  - id: tpl-{t}", "    inputs:", "      - {name: target, required: true}",
                "      - {name: mode, default: fast}", "    steps:",
                f"      - run: echo tpl {t} ${{{{ inputs.target }}}} ${{{{ inputs.mode }}}}"]
    out.append("nodes:")
    for n in range(nodes):
        out.append(f"  - id: node-{n}")
        out.append(f"    name: Node {n}")
        if deps[n]:
            out.append(f"    depends_on: [{', '.join(f'node-{d}' for d in sorted(deps[n]))}]")
        if n % 50 == 0:
            out.append("    strategy: {type: matrix, values: [{region: us}, {region: eu}]}")
        elif n % 50 == 25:
            out.append("    strategy: {type: matrix, from_state: items}")
        out.append("    env: {LEVEL: '" + str(n % 7) + "'}")
        out.append("    steps:")
        upstream = min(deps[n]) if deps[n] else None
        ref = f" ${{{{ tasks.node-{upstream}.outputs.result }}}}" if upstream is not None else ""
        out.append(f"      - run: echo node {n} ${{{{ params.who || 'x' }}}}{ref}")
        if n % 5 == 0:
            out.append(f"      - use: {{template: tpl-{n % templates}, inputs: {{target: n{n}}}}}")
    return "\n".join(out) + "\n"


def _median_wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                       cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    """Run the benchmark, print the table, write bench/results/validate.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    add_quiet_options(parser)
    args = parser.parse_args()
    load, waited = wait_for_quiet(args.max_load, args.quiet_wait)

    text = generate()
    report = validate_source(text, "generated.yaml")
    if not report.ok:
        print("generated workflow is invalid:", report.errors[:3], file=sys.stderr)
        return 1
    assert report.summary.dependencies == EDGES and report.summary.nodes == NODES
    samples = []
    for _ in range(args.runs):
        start = time.perf_counter()
        validate_source(text, "generated.yaml")
        samples.append(time.perf_counter() - start)
    validate_s = statistics.median(samples)

    small = ROOT / "examples" / "simple.yaml"
    with tempfile.TemporaryDirectory():
        floor_s = _median_wall([sys.executable, "-c", "pass"], args.runs + 2)
        models_s = _median_wall([sys.executable, "-c", "import runner.workflow.model"],
                                args.runs + 2)
        startup_s = _median_wall([sys.executable, "-m", "runner", "validate", "-w", str(small)],
                                 args.runs + 2)

    rows = [
        ("validate 1,000 nodes / 3,000 edges / 200 templates "
         f"({len(text) // 1024} KiB YAML), median of {args.runs}",
         f"{validate_s * 1000:.0f} ms", f"< {VALIDATE_TARGET_S * 1000:.0f} ms",
         "ok" if validate_s < VALIDATE_TARGET_S else "MISSED", ""),
        ("floor: `python -c pass` wall time", f"{floor_s * 1000:.0f} ms", "", "", "1.0x"),
        ("fixed cost of the design: import pydantic and build the workflow models",
         f"{models_s * 1000:.0f} ms", "", "", f"{models_s / floor_s:.1f}x"),
        ("`ferry validate -w examples/simple.yaml` wall time", f"{startup_s * 1000:.0f} ms",
         f"< {STARTUP_TARGET_S * 1000:.0f} ms",
         "ok" if startup_s < STARTUP_TARGET_S else "MISSED", f"{startup_s / floor_s:.1f}x"),
        ("`ferry validate` start-up above the floor",
         f"{(startup_s - floor_s) * 1000:.0f} ms", "", "", ""),
    ]
    machine = (f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
               f"{_cpus()} CPUs")
    lines = [f"# bench/validate.py — {time.strftime('%Y-%m-%d', time.gmtime())}", "",
             f"Machine: {machine}. {load_note(load, waited, args.max_load)}", "",
             "| measurement | result | target | status | vs floor |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "validate.md").write_text(table, encoding="utf-8")
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    raise SystemExit(main())
