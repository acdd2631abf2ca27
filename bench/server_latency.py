"""Control-plane benchmarks against the stub as a real subprocess on 127.0.0.1:

- long-poll wake latency: run created -> the waiting claimer's answer (p50/p99), against the
  floor of one trivial authenticated GET round trip;
- claims/s with 20 claimers draining a queue, against 20 threads doing trivial GETs;
- diff batches/s (10 diffs each) from one runner, against heartbeats/s;
- server RSS idle and under load.

Prints a table and writes bench/results/server_latency.md.
    python bench/server_latency.py [--samples 200] [--runs 400]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import add_quiet_options, load_note, pct, wait_for_quiet  # noqa: E402

from server_stub.testing import StubProcess  # noqa: E402
from tests.helpers.gitrepo import make_repo  # noqa: E402
from tests.protocol.api import WORKFLOW_OK, Api, Server, label  # noqa: E402


def create(server: Server, sha: str, lab: str) -> str:
    """Queue one run."""
    return str(server.admin.ok("POST", "/runs", 201, json={
        "repo": "bench", "ref": sha, "workflow_path": "ok.yaml", "labels": [lab]})["id"])


def wake_latency(server: Server, sha: str, samples: int
                 ) -> tuple[list[float], list[float], list[float]]:
    """(create sent -> claim answered, create round trips with no claimer, trivial GET round
    trips)."""
    lab = label()
    runner = server.register([lab])
    lat: list[float] = []
    for _ in range(samples):
        box: dict[str, float] = {}
        ready = threading.Event()

        def claimer(box: dict[str, float] = box, ready: threading.Event = ready) -> None:
            ready.set()
            runner.claim(wait=20)
            box["t1"] = time.perf_counter()

        t = threading.Thread(target=claimer)
        t.start()
        ready.wait()
        time.sleep(0.005)  # let the claim request reach the server's wait
        t0 = time.perf_counter()
        create(server, sha, lab)
        t.join()
        lat.append(box["t1"] - t0)
    admin = server.admin
    creates = []
    idle_lab = label()  # nobody claims these: the create request alone
    for _ in range(samples):
        t0 = time.perf_counter()
        create(server, sha, idle_lab)
        creates.append(time.perf_counter() - t0)
    floor = []
    for _ in range(samples):
        t0 = time.perf_counter()
        admin.ok("GET", "/runs?limit=1")
        floor.append(time.perf_counter() - t0)
    return lat, creates, floor


def claims_per_second(server: Server, sha: str, runs: int, stub: StubProcess
                      ) -> tuple[float, float, float]:
    """(claims/s with 20 claimers, trivial GETs/s with 20 threads, peak RSS MB)."""
    lab = label()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: create(server, sha, lab), range(runs)))
    claimers = [server.register([lab]) for _ in range(20)]
    proc = psutil.Process(stub.proc.pid)
    peak = [proc.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], proc.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    count = [0]
    lock = threading.Lock()

    def drain(i: int) -> None:
        while claimers[i].claim(wait=0) is not None:
            with lock:
                count[0] += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(20) as pool:
        list(pool.map(drain, range(20)))
    claim_rate = count[0] / (time.perf_counter() - t0)
    assert count[0] == runs, count

    def gets(_: int) -> None:
        api = Api(server.url, server.admin_token)
        for _ in range(runs // 20):
            api.ok("GET", "/runs?limit=1")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(20) as pool:
        list(pool.map(gets, range(20)))
    get_rate = (runs // 20) * 20 / (time.perf_counter() - t0)
    done.set()
    sampler.join()
    return claim_rate, get_rate, peak[0] / 2**20


def diff_rate(server: Server, sha: str, batches: int) -> tuple[float, float]:
    """(diff batches/s of 10 diffs, heartbeats/s) from one runner."""
    lab = label()
    create(server, sha, lab)
    runner = server.register([lab])
    got = runner.claim()
    assert got is not None
    run_id, lease = got["run"]["id"], got["lease"]["token"]
    seq = 0
    t0 = time.perf_counter()
    for b in range(batches):
        diffs = []
        for i in range(10):
            seq += 1
            diffs.append({"writer": "w", "seq": seq,
                          "ops": [{"op": "add", "path": f"/state/k{b}_{i}", "value": i}]})
        assert runner.diffs(run_id, lease, diffs).status_code == 200
    batch_rate = batches / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(batches):
        runner.api.ok("POST", f"/runs/{run_id}/heartbeat", json={"lease": lease})
    return batch_rate, batches / (time.perf_counter() - t0)


def main() -> int:
    """Run every benchmark and write the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--batches", type=int, default=300)
    add_quiet_options(parser)
    args = parser.parse_args()
    load, waited = wait_for_quiet(args.max_load, args.quiet_wait)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        sha = make_repo(base / "repos", "bench", {"ok.yaml": WORKFLOW_OK})
        with StubProcess.start(base / "data", base / "repos") as stub:
            server = Server(stub.url, stub.admin_token, stub.registration_token, stub.repos_dir)
            requests.get(stub.url + "/api/v1/runs", headers=stub.admin_headers, timeout=10)
            idle = psutil.Process(stub.proc.pid).memory_info().rss / 2**20
            lat, creates, floor = wake_latency(server, sha, args.samples)
            claim_rate, get_rate, peak = claims_per_second(server, sha, args.runs, stub)
            batch_rate, hb_rate = diff_rate(server, sha, args.batches)
    # benchlib.pct takes a percentile of the values as they are: seconds -> milliseconds here
    lat, creates, floor = ([1000 * x for x in xs] for xs in (lat, creates, floor))
    rows = [
        ("long-poll wake p50 (create sent -> claim answered)", f"{pct(lat, 50):.1f} ms",
         f"{pct(floor, 50):.1f} ms (GET round trip)", f"{pct(lat, 50) / pct(floor, 50):.1f}x"),
        ("long-poll wake p99", f"{pct(lat, 99):.1f} ms", f"{pct(floor, 99):.1f} ms",
         f"{pct(lat, 99) / pct(floor, 99):.1f}x"),
        ("long-poll wake p50, against the create request alone (ref resolved, workflow "
         "validated, no claimer)", f"{pct(lat, 50):.1f} ms",
         f"{pct(creates, 50):.1f} ms (POST /runs round trip)",
         f"{pct(lat, 50) / pct(creates, 50):.2f}x"),
        ("long-poll wake p99, against the create request alone", f"{pct(lat, 99):.1f} ms",
         f"{pct(creates, 99):.1f} ms", f"{pct(lat, 99) / pct(creates, 99):.2f}x"),
        ("claims/s, 20 claimers", f"{claim_rate:.0f}/s", f"{get_rate:.0f} GET/s",
         f"{claim_rate / get_rate:.2f}x"),
        ("diff batches/s (10 diffs each), 1 runner", f"{batch_rate:.0f}/s",
         f"{hb_rate:.0f} heartbeats/s", f"{batch_rate / hb_rate:.2f}x"),
        ("server RSS idle", f"{idle:.0f} MB", "", ""),
        ("server RSS peak under 20 claimers", f"{peak:.0f} MB", "", ""),
    ]
    machine = (f"{platform.system()} {platform.release()}, {psutil.cpu_count()} cores, "
               f"Debian {Path('/etc/debian_version').read_text().strip()}, "
               f"Python {platform.python_version()}")
    lines = ["# server_latency", "", f"Machine: {machine}. Samples: {args.samples} wakes, "
             f"{args.runs} runs claimed, {args.batches} batches.",
             load_note(load, waited, args.max_load),
             f"Command: `python bench/server_latency.py --samples {args.samples} --runs "
             f"{args.runs} --batches {args.batches}`", "",
             "| measure | stub | floor (same run) | ratio |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results" / "server_latency.md"
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
