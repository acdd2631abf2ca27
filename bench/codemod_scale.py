"""A sharded codemod at scale: Ferry against the reference engine on the same package.

    python bench/codemod_scale.py [--files 2000] [--shards 20] [--repeat 3]

A synthetic TSX project (`--files` files in `--shards` directories), a jssg codemod (the
js-astgrep template's `var` -> `const`), sharded by directory into `--shards` shards feeding a
matrix of js-ast-grep tasks. Measured in the same round, wall time, best and median of
`--repeat`:
- the reference engine's own `codemod workflow run` of the package (the floor to beat);
- `ferry run --max-parallel 2` (this machine has 2 cores);
- the run submitted `--distributed` to a control plane: 1 daemon `--concurrency 2` (one
  machine's worth), then 1 and 2 daemons `--concurrency 1` (the scaling with daemons: the
  second one must take shards); submit -> run Completed;
- per shard task (the daemon runs): the median of the apply tasks' started -> ended.
Every run's change is checked equal to the reference's (a daemon run's: its combined patch,
`GET /runs/{id}/patch`, applied with `git apply`). Prints a table and writes
bench/results/codemod_scale.md. Needs the Codemod CLI (FERRY_CODEMOD_BIN or scripts/setup's).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import add_quiet_options, load_note, publish, wait_for_quiet  # noqa: E402

from runner.codemod_cli import PROJECT_BIN, find_codemod  # noqa: E402
from tests.differential.codemod_support import (  # noqa: E402
    CLEAN_ENV,
    PACKAGES,
    changes,
    git,
    make_project,
)
from tests.helpers import wait_until  # noqa: E402
from tests.integration.daemon.conftest import DaemonProc, Server  # noqa: E402

WORKFLOW = """\
version: "1"
nodes:
  - id: plan
    name: Plan shards
    steps:
      - name: Shard by directory
        shard:
          method: {{type: directory, max_files_per_shard: {per}}}
          target: src
          output_state: shards
          file_pattern: "**/*.tsx"
  - id: apply
    name: Apply
    depends_on: [plan]
    strategy: {{type: matrix, from_state: shards}}
    steps:
      - name: transform
        js-ast-grep: {{js_file: scripts/codemod.ts, language: tsx}}
"""


def project_files(files: int, shards: int) -> dict[str, str]:
    """`files` TSX files spread evenly over `shards` directories."""
    out = {}
    for i in range(files):
        d = i % shards
        out[f"src/mod{d:02d}/C{i:04d}.tsx"] = (
            f"import React from 'react';\nvar count{i} = {i};\nvar label = 'm{d}';\n"
            f"export function C{i}() {{\n  var x = count{i} + 1;\n"
            f"  return <div>{{label}} {{x}}</div>;\n}}\n")
    return out


def package(root: Path, files: int, shards: int) -> Path:
    """The codemod package: the template's script and the sharded workflow."""
    pkg = root / "pkg"
    (pkg / "scripts").mkdir(parents=True)
    shutil.copy(PACKAGES / "js-astgrep-template" / "scripts" / "codemod.ts", pkg / "scripts")
    (pkg / "workflow.yaml").write_text(WORKFLOW.format(per=-(-files // shards)))
    return pkg


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({done.returncode}):\n{done.stdout[-2000:]}"
                         f"\n{done.stderr[-2000:]}")
    return took


def reference(binary: Path, pkg: Path, project: Path, home: Path) -> float:
    home.mkdir(parents=True, exist_ok=True)
    return timed([str(binary), "--disable-analytics", "workflow", "run", "-w",
                  str(pkg / "workflow.yaml"), "-t", str(project), "--no-interactive",
                  "--allow-dirty"], project, {**CLEAN_ENV, "HOME": str(home)})


def ferry_local(binary: Path, pkg: Path, project: Path, home: Path) -> float:
    return timed([sys.executable, "-m", "runner", "run", "-w", str(pkg / "workflow.yaml"),
                  "--workdir", str(project), "--max-parallel", "2"], ROOT,
                 {**CLEAN_ENV, "HOME": str(home), "FERRY_HOME": str(home),
                  "FERRY_LIVE": "0", "FERRY_CODEMOD_BIN": str(binary)})


def _seconds(task: dict[str, object]) -> float:
    start = datetime.datetime.fromisoformat(str(task["started_at"]))
    return (datetime.datetime.fromisoformat(str(task["ended_at"])) - start).total_seconds()


def daemons(binary: Path, root: Path, files: dict[str, str], pkg: Path, count: int,
            concurrency: int, distributed: bool, want: str) -> tuple[float, list[float], int]:
    """Submit -> Completed with `count` daemons serving the control plane (a distributed run,
    or a whole run claimed by one daemon); the wall time, the shard tasks' durations and how
    many daemons executed shards."""
    server = Server(root / "server")
    server.start()
    procs: list[DaemonProc] = []
    try:
        tree = {**files, **{f"codemod/{p.relative_to(pkg)}": p.read_text()
                            for p in pkg.rglob("*") if p.is_file()}}
        server.repo("bench", tree)
        for n in range(count):
            home = root / f"daemon-{n}"
            home.mkdir()
            proc = DaemonProc(home, server, f"bench-{n}")
            proc.register()
            proc.start("--concurrency", str(concurrency),
                       env={"FERRY_CODEMOD_BIN": str(binary)})
            procs.append(proc)
        wait_until(lambda: all("daemon ready" in p.log() for p in procs), timeout=60)
        started = time.monotonic()
        run_id = server.submit("bench", "codemod/workflow.yaml", distributed=distributed)
        wait_until(lambda: server.status(run_id) in ("Completed", "Failed"), timeout=900,
                   interval=0.05)
        took = time.monotonic() - started
        if server.status(run_id) != "Completed":
            raise SystemExit(f"daemon run {run_id} failed")
        patch = server.admin_call("GET", f"/runs/{run_id}/patch").content
        project = make_project(root / "applied", files)
        (root / "run.patch").write_bytes(patch)
        git(project, "apply", str(root / "run.patch"))
        if changes(project) != want:
            raise SystemExit(f"daemon run {run_id}: its patch is not the reference's diff")
        history = server.admin_call("GET", f"/runs/{run_id}",
                                    params={"history": "true"}).json()["history"]
        shards = [t for t in server.run(run_id)["tasks"].values()
                  if t["node_id"] == "apply" and not t.get("master")]
        ids = {t["id"] for t in shards}
        runners = {d["writer"].split("/")[0] for d in history
                   if d["writer"].count("/") == 2 and d["writer"].split("/")[1] in ids}
        return took, [_seconds(t) for t in shards], len(runners)
    finally:
        for proc in procs:
            proc.kill()
        server.kill()


CASES = {"1 daemon, whole run": (1, 1, False), "1 daemon x2": (1, 2, True),
         "1 daemon x1": (1, 1, True), "2 daemons x1": (2, 1, True)}
"""name -> (daemons, --concurrency, submitted --distributed)."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    add_quiet_options(parser)
    args = parser.parse_args()
    found = find_codemod(os.environ, None, [ROOT / PROJECT_BIN])
    if found is None:
        raise SystemExit("no Codemod CLI: run scripts/setup or set FERRY_CODEMOD_BIN")
    load, waited = wait_for_quiet(args.max_load, args.quiet_wait)
    files = project_files(args.files, args.shards)
    times: dict[str, list[float]] = {"reference": [], "ferry run": [],
                                     **{name: [] for name in CASES}}
    per_task: dict[str, list[float]] = {name: [] for name in CASES}
    takers: dict[str, set[int]] = {name: set() for name in CASES}
    with tempfile.TemporaryDirectory(prefix="codemod-scale-") as tmp:
        root = Path(tmp)
        pkg = package(root, args.files, args.shards)
        for i in range(args.repeat):
            runs = root / f"r{i}"
            ref_project = make_project(runs / "ref", files)
            times["reference"].append(reference(found.path, pkg, ref_project, runs / "rh"))
            want = changes(ref_project)
            project = make_project(runs / "ferry", files)
            times["ferry run"].append(ferry_local(found.path, pkg, project, runs / "fh"))
            if changes(project) != want:
                raise SystemExit("ferry run left another diff than the reference")
            for name, (count, concurrency, distributed) in CASES.items():
                took, tasks, ran = daemons(found.path, runs / name.replace(" ", "-").replace(
                    ",", ""), files, pkg, count, concurrency, distributed, want)
                times[name].append(took)
                per_task[name] += tasks
                takers[name].add(ran)
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
                  file=sys.stderr, flush=True)
    if takers["2 daemons x1"] != {2}:
        raise SystemExit(f"the second daemon did not take shards: {takers}")
    ref = statistics.median(times["reference"])
    rows = "\n".join(
        f"| {name} | {min(v):.2f} s | {statistics.median(v):.2f} s | "
        f"{ref / statistics.median(v):.2f}× | "
        f"{statistics.median(per_task[name]):.2f} s |" if name in per_task else
        f"| {name} | {min(v):.2f} s | {statistics.median(v):.2f} s | "
        f"{ref / statistics.median(v):.2f}× | |" for name, v in times.items())
    scaling = statistics.median(times["1 daemon x1"]) / statistics.median(times["2 daemons x1"])
    text = f"""# Sharded codemod at scale (`bench/codemod_scale.py`)

{args.files} TSX files in {args.shards} directories; the js-astgrep template's jssg codemod
(`var` -> `const`, every file changes); a `shard` step by directory
({-(-args.files // args.shards)} files per shard, {args.shards} shards) feeding a matrix of
js-ast-grep tasks. Codemod CLI 1.18.3; {args.repeat} rounds, every engine in each round;
every Ferry run's change equal to the reference's (a daemon run's combined patch applied with
`git apply`). Speed-up = reference median / median.

| what | best | median | speed-up vs reference | shard task, median |
|---|---|---|---|---|
{rows}

- reference: `codemod workflow run` of the package (its tasks run one after another; its
  completion check sleeps 1-2 s between looks).
- `ferry run --max-parallel 2`; the run submitted to `ferry-server` and executed by one
  daemon as a whole run (what a single runner does with a run not marked `--distributed`: its
  tasks run side by side in one checkout, 2 at a time on 2 cores, as `ferry run` runs them),
  or submitted with `--distributed` and executed task by task by daemons `xN` =
  `--concurrency N`, submit -> Completed. In "2 daemons x1" both daemons executed shards in
  every round.
- Scaling with daemons (`--concurrency 1` each): 1 -> 2 daemons {scaling:.2f}× faster
  (ideal 2×; both share this machine's {os.cpu_count()} cores).
- Shard task: a shard's started -> ended (its checkout is the previous shard's, reset to the
  commit; the Codemod CLI alone takes about 0.25 s for 100 files here).

{load_note(load, waited, args.max_load)} Machine: {os.cpu_count()} cores.
"""
    publish(text, ROOT / "bench" / "results" / "codemod_scale.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
