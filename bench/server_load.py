"""The control plane under load and attack, against the stub as a real subprocess on 127.0.0.1:

- 50 runners long-poll for runs; 1,000 runs are created in bursts (100 at once, then a pause);
- each claimed run is confirmed, gets 5 diffs, 2 log chunks, a heartbeat and its finish;
- meanwhile an attacker sends the copy-amplification batch (19 copies of a 1.5 KB array into
  itself, ~2 KB) to a run it reported, over and over;
- measured: queue -> claim latency and diff round trips (p50/p99, floor: a trivial GET in the
  same run), errors (any answer but the expected one; goal 0), the attack's answers, and the
  server's RSS before, at its peak and after (goal: no growth).

Prints a table and writes bench/results/server_load.md.
    python bench/server_load.py [--runs 1000] [--runners 50] [--burst 100]
"""

from __future__ import annotations

import argparse
import base64
import platform
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import add_quiet_options, load_note, pct, publish, wait_for_quiet  # noqa: E402

from runner.document import new_run  # noqa: E402
from server_stub.testing import StubProcess  # noqa: E402
from tests.helpers.gitrepo import make_repo  # noqa: E402
from tests.protocol.api import WORKFLOW_OK, Api, Runner, Server  # noqa: E402

LABEL = "load"


class Stats:
    """Latencies per kind, errors with a sample of each, thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lat: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.samples: dict[str, str] = {}

    def ok(self, kind: str, seconds: float) -> None:
        """One expected answer."""
        with self.lock:
            self.lat[kind].append(seconds)

    def error(self, kind: str, what: str) -> None:
        """One unexpected answer or exception."""
        with self.lock:
            self.errors[kind] += 1
            self.samples.setdefault(kind, what[:300])


def timed(stats: Stats, kind: str, api: Api, method: str, path: str, want: int = 200,
          **kw: Any) -> Any:
    """One request; its latency when it answers `want`, an error otherwise."""
    t0 = time.perf_counter()
    try:
        resp = api.call(method, path, **kw)
    except Exception as exc:  # a bench counts every failure, whatever it is
        stats.error(kind, f"{type(exc).__name__}: {exc}")
        return None
    took = time.perf_counter() - t0
    if resp.status_code != want:
        stats.error(kind, f"{resp.status_code} {resp.text}")
        return None
    stats.ok(kind, took)
    return resp.json() if resp.content else None


def run_one(stats: Stats, runner: Runner, claimed: dict[str, Any]) -> None:
    """What a runner does with a claimed run: confirm, 5 diffs, 2 log chunks, heartbeat,
    finish."""
    run_id, lease = claimed["run"]["id"], claimed["lease"]["token"]
    writer = f"{runner.id}/a{claimed['run']['attempt']}"
    api = runner.api
    timed(stats, "start", api, "POST", f"/runs/{run_id}/start", json={"lease": lease})
    task = str(uuid.uuid4())
    ops_by_seq = [
        [{"op": "replace", "path": "/status", "value": "Running"},
         {"op": "add", "path": f"/tasks/{task}", "value": {
             "id": task, "node_id": "build", "status": "Pending", "outputs": {}}}],
        [{"op": "replace", "path": f"/tasks/{task}/status", "value": "Running"}],
        [{"op": "add", "path": "/state/progress", "value": {"step": 1, "of": 2}}],
        [{"op": "add", "path": f"/tasks/{task}/outputs/artifact", "value": "x" * 200}],
        [{"op": "replace", "path": f"/tasks/{task}/status", "value": "Completed"},
         {"op": "replace", "path": "/status", "value": "Completed"}],
    ]
    offset = 0
    for seq, ops in enumerate(ops_by_seq, start=1):
        timed(stats, "diff", api, "POST", f"/runs/{run_id}/diffs",
              json={"lease": lease, "diffs": [{"writer": writer, "seq": seq, "ops": ops}]})
        if seq in (2, 4):
            data = f"line {seq} of the build output\n".encode() * 20
            timed(stats, "log", api, "POST", f"/runs/{run_id}/logs", json={
                "lease": lease, "task": task, "offset": offset,
                "data": base64.b64encode(data).decode()})
            offset += len(data)
        if seq == 3:
            timed(stats, "heartbeat", api, "POST", f"/runs/{run_id}/heartbeat",
                  json={"lease": lease})
    timed(stats, "finish", api, "POST", f"/runs/{run_id}/finish",
          json={"lease": lease, "status": "Completed"})


def runner_loop(stats: Stats, runner: Runner, claimed_at: dict[str, float], done: set[str],
                total: int, stop: threading.Event) -> None:
    """Long-poll, run what comes, until every run is done."""
    while not stop.is_set() and len(done) < total:
        t0 = time.perf_counter()
        try:
            resp = runner.api.call("POST", "/runs/claim", timeout=40,
                                   json={"labels": [LABEL], "wait": 5})
        except Exception as exc:  # counted, and the loop goes on as a daemon would
            stats.error("claim", f"{type(exc).__name__}: {exc}")
            continue
        if resp.status_code == 204:
            stats.ok("claim (204)", time.perf_counter() - t0)
            continue
        if resp.status_code != 200:
            stats.error("claim", f"{resp.status_code} {resp.text}")
            continue
        claimed = resp.json()
        run_id = claimed["run"]["id"]
        with stats.lock:
            claimed_at[run_id] = time.perf_counter()
        run_one(stats, runner, claimed)
        with stats.lock:
            done.add(run_id)


def creator(stats: Stats, server: Server, total: int, burst: int, pause: float,
            created: dict[str, float]) -> None:
    """Create the runs in bursts."""
    made = 0
    while made < total:
        for _ in range(min(burst, total - made)):
            t0 = time.perf_counter()
            body = timed(stats, "create", server.admin, "POST", "/runs", 201, json={
                "repo": "bench", "ref": "main", "workflow_path": "ok.yaml",
                "labels": [LABEL]})
            if body is not None:
                with stats.lock:
                    created[body["id"]] = t0
            made += 1
        time.sleep(pause)


def attacker(stats: Stats, server: Server, stop: threading.Event) -> None:
    """Report a run, then send the amplification batch to it until told to stop."""
    evil = server.register(name="attacker")
    doc = new_run({"version": "1", "nodes": []}, name="evil", params={},
                  created_at="2024-01-01T00:00:00Z", run_id=str(uuid.uuid4()))
    evil.api.ok("POST", "/runs/report", 201, json={"run": doc})
    ops = [{"op": "add", "path": "/x", "value": ["A" * 1500]}]
    ops += [{"op": "copy", "from": "/x", "path": "/x/-"}] * 19
    while not stop.is_set():
        timed(stats, "attack (413 expected)", evil.api, "POST", f"/runs/{doc['id']}/diffs",
              413, json={"diffs": [{"writer": "evil", "seq": 1, "ops": ops}]})
        stop.wait(0.2)


def floor(stats: Stats, server: Server, stop: threading.Event) -> None:
    """Trivial authenticated GETs alongside: the round-trip floor under the same load."""
    api = Api(server.url, server.admin_token)
    while not stop.is_set():
        timed(stats, "GET /runs?limit=1 (floor)", api, "GET", "/runs?limit=1")
        stop.wait(0.05)


def rss_mb(pid: int) -> float:
    """The process's resident memory in MB."""
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def measure(args: argparse.Namespace, stub: StubProcess, runs: int) -> dict[str, Any]:
    """One full load of `runs` runs; the stats and memory figures."""
    server = Server(stub.url, stub.admin_token, stub.registration_token, stub.repos_dir)
    stats, done = Stats(), set[str]()
    created: dict[str, float] = {}
    claimed_at: dict[str, float] = {}
    runners = [server.register([LABEL], name=f"load-{i}") for i in range(args.runners)]
    stop, attack_stop = threading.Event(), threading.Event()
    rss_before = rss_mb(stub.proc.pid)
    peak = [rss_before]

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(stub.proc.pid))
            stop.wait(0.25)

    threads = [threading.Thread(target=runner_loop, args=(stats, r, claimed_at, done, runs,
                                                          stop)) for r in runners]
    threads += [threading.Thread(target=sample), threading.Thread(target=floor,
                                                                  args=(stats, server, stop))]
    side = threading.Thread(target=attacker, args=(stats, server, attack_stop))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    side.start()
    creator(stats, server, runs, args.burst, args.pause, created)
    deadline = time.monotonic() + args.timeout
    while len(done) < runs and time.monotonic() < deadline:
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    attack_stop.set()
    side.join(60)
    stop.set()
    for t in threads:
        t.join(60)
    time.sleep(1.0)  # let the server settle (claims cut short, connections closed)
    for run_id, at in claimed_at.items():  # the creator learns an id after a claimer may
        if run_id in created:
            stats.ok("queue -> claim", at - created[run_id])
    return {"stats": stats, "wall": wall, "done": len(done), "rss_before": rss_before,
            "rss_peak": peak[0], "rss_after": rss_mb(stub.proc.pid)}


def report(args: argparse.Namespace, got: dict[str, Any], note: str) -> str:
    """The results file."""
    stats: Stats = got["stats"]
    lines = [f"# server_load: {args.runners} runners, {args.runs} runs in bursts of "
             f"{args.burst}, amplification attack alongside", "",
             f"Stub over real HTTP on 127.0.0.1, default limits; {platform.python_version()}, "
             f"{psutil.cpu_count()} cores. {note}", "",
             f"RSS before is taken after a warm-up of {args.warmup} runs of the same kind "
             "(caches and pools filled); queue -> claim is from the create request's start to "
             "the claim's answer.", "",
             f"Runs completed: {got['done']} / {args.runs} in {got['wall']:.1f} s "
             f"({got['done'] / got['wall']:.1f} runs/s).", "",
             "| request | count | p50 ms | p99 ms | max ms | errors |", "|---|---|---|---|---|---|"]
    kinds = sorted(set(stats.lat) | set(stats.errors))
    for kind in kinds:
        lat = stats.lat.get(kind, [])
        cells = ([f"{pct(lat, 50) * 1000:.1f}", f"{pct(lat, 99) * 1000:.1f}",
                  f"{max(lat) * 1000:.1f}"] if lat else ["-", "-", "-"])
        lines.append(f"| {kind} | {len(lat)} | {' | '.join(cells)} | "
                     f"{stats.errors.get(kind, 0)} |")
    errors = sum(stats.errors.values())
    growth = got["rss_after"] - got["rss_before"]
    diff = stats.lat.get("diff", [0.0])
    base = stats.lat.get("GET /runs?limit=1 (floor)", [0.0])
    lines += ["", f"Errors (any unexpected answer or exception): **{errors}** (goal 0).",
              f"Diff p50 / floor p50: {pct(diff, 50) / max(pct(base, 50), 1e-9):.2f}x.",
              f"Server RSS: {got['rss_before']:.0f} MB before, {got['rss_peak']:.0f} MB peak, "
              f"{got['rss_after']:.0f} MB after ({growth:+.0f} MB).", ""]
    for kind, sample in stats.samples.items():
        lines.append(f"- first `{kind}` error: {sample}")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run the load once; exit 1 on any error or an RSS growth over --max-growth MB."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--runners", type=int, default=50)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between bursts")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--warmup", type=int, default=200,
                        help="runs done (and not counted) before the RSS baseline")
    parser.add_argument("--max-growth", type=float, default=50.0,
                        help="MB of RSS growth (after - before) counted as a failure")
    add_quiet_options(parser)
    args = parser.parse_args()
    load, waited = wait_for_quiet(args.max_load, args.quiet_wait)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        make_repo(base / "repos", "bench", {"ok.yaml": WORKFLOW_OK})
        with StubProcess.start(base / "data", base / "repos") as stub:
            if args.warmup:  # caches and pools filled first: growth after it would be a leak
                measure(args, stub, args.warmup)
            got = measure(args, stub, args.runs)
    text = report(args, got, load_note(load, waited, args.max_load))
    publish(text, ROOT / "bench" / "results" / "server_load.md")
    failed = sum(got["stats"].errors.values()) > 0 or got["done"] < args.runs
    return 1 if failed or got["rss_after"] - got["rss_before"] > args.max_growth else 0


if __name__ == "__main__":
    sys.exit(main())
