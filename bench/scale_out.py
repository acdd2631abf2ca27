"""Scaling out, measured on this machine with real processes and a real PostgreSQL:

- claims/s (20 claimers draining a queue) and long-poll wake p50/p99 (run created -> a waiting
  claimer's answer) for 1 server on SQLite, 1 server on PostgreSQL, and 2 servers on one
  PostgreSQL (claimers spread over both; the wake crosses replicas: created on A, claimed on B);
- one 200-task matrix of `sleep 1` steps, a distributed run, over 1, 2 and 4 daemons
  (`--concurrency 2`): wall time from create to Completed against the ideal 200 / (2 n) s;
- 20 claimers (over 2 replicas) x 2,000 tasks (10 distributed runs of 200): every task executed
  once.

Prints a table and writes bench/results/scale_out.md.
    python bench/scale_out.py [--runs 1000] [--samples 100] [--tasks 200] [--daemons 1,2,4]
                              [--race-tasks 2000] [--race-run-size 200]
"""

from __future__ import annotations

import argparse
import platform
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import add_quiet_options, load_note, pct, publish, wait_for_quiet  # noqa: E402

from server_stub.testing import StubProcess  # noqa: E402
from tests.helpers.gitrepo import make_repo  # noqa: E402
from tests.helpers.pg import PgCluster  # noqa: E402
from tests.integration.daemon.conftest import DaemonProc  # noqa: E402
from tests.integration.daemon.conftest import Server as DaemonServer  # noqa: E402
from tests.protocol.api import WORKFLOW_OK, Runner, Server, label  # noqa: E402


def matrix_workflow(n: int, step: str) -> str:
    """A distributed-friendly matrix of `n` items running `step`."""
    items = ", ".join(f"{{i: {k}}}" for k in range(n))
    return (f'version: "1"\nnodes:\n  - id: fan\n    strategy:\n      type: matrix\n'
            f'      values: [{items}]\n    steps:\n      - run: {step}\n')


@contextmanager
def servers(kind: str, base: Path, repos: Path, pg: PgCluster,
            count: int = 1) -> Iterator[list[Server]]:
    """`count` servers (one for sqlite) sharing tokens, repositories and database."""
    admin, reg = "fa_" + secrets.token_urlsafe(16), "fr_" + secrets.token_urlsafe(16)
    extra: list[str] = []
    if kind != "sqlite":
        extra = ["--database", pg.new_database("bench"), "--secrets-key",
                 str(base / "secrets.key")]
    procs = [StubProcess(base / f"data{i}", repos, *extra, admin_token=admin,
                         registration_token=reg) for i in range(count)]
    try:
        for proc in procs:
            proc.launch()
        yield [Server(p.url, admin, reg, p.repos_dir) for p in procs]
    finally:
        for proc in procs:
            proc.stop()


def create(server: Server, lab: str, workflow: str = "ok.yaml", **extra: object) -> str:
    """Queue one run."""
    return str(server.admin.ok("POST", "/runs", 201, json={
        "repo": "bench", "ref": "main", "workflow_path": workflow, "labels": [lab],
        **extra})["id"])


def claim_rate(group: list[Server], runs: int) -> float:
    """Claims/s of 20 claimers (spread over the servers) draining `runs` queued runs."""
    lab = label()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: create(group[i % len(group)], lab), range(runs)))
    claimers = [group[i % len(group)].register([lab]) for i in range(20)]
    count = Counter[str]()
    lock = threading.Lock()

    def drain(runner: Runner) -> None:
        while (got := runner.claim(wait=0)) is not None:
            with lock:
                count[got["run"]["id"]] += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(20) as pool:
        list(pool.map(drain, claimers))
    elapsed = time.perf_counter() - t0
    assert len(count) == runs and set(count.values()) == {1}, "a run was claimed twice or never"
    return runs / elapsed


def wake(group: list[Server], samples: int) -> list[float]:
    """Create (on the first server) -> claim answered (on the last server), in ms."""
    lab = label()
    runner = group[-1].register([lab])
    out = []
    for _ in range(samples):
        box: dict[str, float] = {}
        ready = threading.Event()

        def claimer(box: dict[str, float] = box, ready: threading.Event = ready) -> None:
            ready.set()
            assert runner.claim(wait=20) is not None
            box["t1"] = time.perf_counter()

        thread = threading.Thread(target=claimer)
        thread.start()
        ready.wait()
        time.sleep(0.01)  # let the claim reach the server's wait
        t0 = time.perf_counter()
        create(group[0], lab)
        thread.join()
        out.append((box["t1"] - t0) * 1000)
    return out


def matrix_wall(base: Path, pg: PgCluster, tasks: int, daemons: int) -> float:
    """Seconds from create to Completed for a distributed `tasks`-item `sleep 1` matrix over
    `daemons` daemons with --concurrency 2."""
    server = DaemonServer(base / "server", "--database", pg.new_database("matrix"))
    server.start()
    procs: list[DaemonProc] = []
    try:
        server.repo("bench", {"m.yaml": matrix_workflow(tasks, "sleep 1")})
        for k in range(daemons):
            home = base / f"home{k}"
            home.mkdir()
            proc = DaemonProc(home, server, f"d{k}")
            proc.register()
            proc.start("--concurrency", "2", "--log-level", "warning")
            procs.append(proc)
        time.sleep(2.0)  # the daemons' start-up (imports, first claim) is not the run's time
        t0 = time.perf_counter()
        run_id = server.submit("bench", "m.yaml", distributed=True)
        while server.info(run_id)["queue"] != "done":
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        status = server.status(run_id)
        assert status == "Completed", status
        return wall
    finally:
        for proc in procs:
            proc.signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(120)
        server.kill()


def race(group: list[Server], runs: int) -> tuple[int, int, int, float]:
    """20 claimers over the servers execute every task of `runs` distributed runs (claim, start,
    write the task's end, finish); (tasks, executions, double executions, seconds)."""
    lab = label()
    run_ids = [create(group[i % len(group)], lab, "race.yaml", distributed=True)
               for i in range(runs)]
    claimers = [group[i % len(group)].register([lab]) for i in range(20)]
    executed = Counter[str]()
    lock = threading.Lock()

    def work(runner: Runner) -> None:
        while True:
            resp = runner.api.call("POST", "/runs/claim", json={
                "labels": runner.labels, "wait": 2, "tasks": True}, timeout=30)
            if resp.status_code == 204:
                return
            got = resp.json()
            task, lease, run_id = got["task"], got["lease"]["token"], got["run"]["id"]
            with lock:
                executed[task] += 1
            runner.api.ok("POST", f"/runs/{run_id}/start", json={"lease": lease})
            writer = f"{runner.id}/{task}/a{got['run']['attempt']}"
            ok = runner.diffs(run_id, lease, [{"writer": writer, "seq": 1, "ops": [
                {"op": "replace", "path": f"/tasks/{task}/status", "value": "Completed"}]}])
            assert ok.status_code == 200, ok.text
            runner.api.ok("POST", f"/runs/{run_id}/finish",
                          json={"lease": lease, "status": "Completed"})

    t0 = time.perf_counter()
    with ThreadPoolExecutor(20) as pool:
        list(pool.map(work, claimers))
    elapsed = time.perf_counter() - t0
    children = []
    for run_id in run_ids:
        doc = group[0].admin.ok("GET", f"/runs/{run_id}")
        assert doc["status"] == "Completed", doc["status"]
        children += [t for t in doc["tasks"].values() if not t.get("master")]
    assert all(t["status"] == "Completed" and t["attempt"] == 1 for t in children)
    doubles = sum(n - 1 for n in executed.values() if n > 1)
    return len(children), sum(executed.values()), doubles, elapsed


def timed(label_: str, fn: Callable[[], object]) -> object:
    """Run one measurement, saying what it is doing."""
    print(f"... {label_}", file=sys.stderr, flush=True)
    return fn()


def main() -> int:
    """Run every measurement and write the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--daemons", default="1,2,4")
    parser.add_argument("--race-tasks", type=int, default=2000)
    parser.add_argument("--race-run-size", type=int, default=200)
    add_quiet_options(parser)
    args = parser.parse_args()
    load, waited = wait_for_quiet(args.max_load, args.quiet_wait)
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp, PgCluster.start() as pg:
        base = Path(tmp)
        make_repo(base / "repos", "bench", {
            "ok.yaml": WORKFLOW_OK,
            "race.yaml": matrix_workflow(args.race_run_size, "\"true\"")})
        claims: dict[str, float] = {}
        wakes: dict[str, list[float]] = {}
        for kind, count in (("sqlite", 1), ("postgresql", 1), ("2 replicas", 2)):
            with servers(kind, base / kind.replace(" ", "-"), base / "repos", pg,
                         count) as group:
                wakes[kind] = list(timed(f"wake, {kind}", lambda g=group: wake(
                    g, args.samples)))  # type: ignore[call-overload]
                claims[kind] = float(timed(f"claims, {kind}", lambda g=group: claim_rate(
                    g, args.runs)))  # type: ignore[arg-type]
                if kind == "2 replicas":
                    race_result = timed("race", lambda g=group: race(
                        g, max(1, args.race_tasks // args.race_run_size)))
        for kind in ("sqlite", "postgresql", "2 replicas"):
            base_rate, base_wake = claims["sqlite"], wakes["sqlite"]
            rows.append((f"claims/s, 20 claimers, {kind}", f"{claims[kind]:.0f}/s",
                         f"{base_rate:.0f}/s (sqlite)", f"{claims[kind] / base_rate:.2f}x"))
            rows.append((f"wake p50 / p99, {kind}" + (" (created on A, claimed on B)"
                                                      if kind == "2 replicas" else ""),
                         f"{pct(wakes[kind], 50):.1f} / {pct(wakes[kind], 99):.1f} ms",
                         f"{pct(base_wake, 50):.1f} / {pct(base_wake, 99):.1f} ms (sqlite)",
                         f"{pct(wakes[kind], 50) / pct(base_wake, 50):.2f}x / "
                         f"{pct(wakes[kind], 99) / pct(base_wake, 99):.2f}x"))
        for n in (int(x) for x in args.daemons.split(",")):
            wall = float(timed(f"matrix over {n} daemon(s)", lambda n=n: matrix_wall(
                base / f"matrix{n}", pg, args.tasks, n)))  # type: ignore[arg-type]
            ideal = args.tasks / (2 * n)
            rows.append((f"{args.tasks}-task `sleep 1` matrix, {n} daemon(s) x --concurrency 2",
                         f"{wall:.1f} s", f"{ideal:.0f} s (ideal {args.tasks}/(2*{n}))",
                         f"{wall / ideal:.2f}x"))
        tasks, executions, doubles, seconds = race_result  # type: ignore[misc]
        rows.append((f"20 claimers over 2 replicas x {tasks} tasks ({args.race_run_size} per "
                     "distributed run)",
                     f"{doubles} double executions ({executions} executions, "
                     f"{executions / seconds:.0f} tasks/s)", "0", ""))
    machine = (f"{platform.system()} {platform.release()}, {psutil.cpu_count()} cores, "
               f"Debian {Path('/etc/debian_version').read_text().strip()}, "
               f"Python {platform.python_version()}, PostgreSQL from {pg.bin}")
    lines = ["# scale_out", "", f"Machine: {machine}.", load_note(load, waited, args.max_load),
             f"Command: `python bench/scale_out.py --runs {args.runs} --samples {args.samples}"
             f" --tasks {args.tasks} --daemons {args.daemons} --race-tasks {args.race_tasks}"
             f" --race-run-size {args.race_run_size}`",
             "", "| measure | result | floor / peer (same run) | ratio |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    publish("\n".join(lines) + "\n", ROOT / "bench" / "results" / "scale_out.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
