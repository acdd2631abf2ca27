"""Daemon benchmarks against a real stub server (subprocess) and a real `ferry daemon`.

    python bench/daemon_bench.py [--runs 100] [--latency-runs 30] [--idle-seconds 20]

Measures: run created -> first step running (p50/p99, one daemon, concurrency 1; the floor is
the server's own create -> claim answer, measured in the same run with a bare long-poll client);
100 trivial runs with --concurrency 2 (runs/s); idle daemon RSS and CPU. Prints a table and
writes bench/results/daemon_bench.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import add_quiet_options, load_note, pct, wait_for_quiet  # noqa: E402

from runner.api.client import ControlClient  # noqa: E402
from tests.integration.daemon.conftest import REGISTRATION, DaemonProc, Server  # noqa: E402

MARK = """\
version: "1"
nodes:
  - id: only
    steps:
      - name: mark
        run: date +%s.%N >> "${{params.dir}}/${{params.n}}"
"""








def floor_latency(server: Server, runs: int) -> list[float]:
    """create -> claim answered, with a bare client (no daemon): the server's share."""
    reg = ControlClient(server.url, REGISTRATION).register("floor", ["floor"])
    client = ControlClient(server.url, reg.token)
    out = []
    for _ in range(runs):
        got: list[float] = []

        def claim(got: list[float] = got) -> None:
            answer = client.claim(["floor"], wait=10)
            got.append(time.time())
            assert answer is not None
            client.finish(answer.run.id, answer.lease.token, "Canceled")

        t = threading.Thread(target=claim)
        t.start()
        time.sleep(0.05)  # let the long poll park on the server
        t0 = time.time()
        server.submit("bench", "wf.yaml", params={"dir": "/tmp", "n": "x"}, labels=["floor"])
        t.join()
        out.append(got[0] - t0)
    return out


def main() -> int:
    """Run the benchmarks, print the table, write the results file."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    add_quiet_options(parser)
    args = parser.parse_args()
    load, waited = wait_for_quiet(args.max_load, args.quiet_wait)
    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-"))
    side = tmp / "side"
    side.mkdir()
    server = Server(tmp / "server")
    server.start()
    rows: list[tuple[str, str, str, str]] = []
    try:
        server.repo("bench", {"wf.yaml": MARK})
        floor = floor_latency(server, args.latency_runs)

        home = tmp / "home"
        home.mkdir()
        daemon = DaemonProc(home, server, "bench")
        daemon.register()
        daemon.start("--log-level", "warning")
        time.sleep(2)  # let it start and park its first long poll
        lat = []
        for i in range(args.latency_runs):
            t0 = time.time()
            server.submit("bench", "wf.yaml", params={"dir": str(side), "n": f"lat{i}"})
            target = side / f"lat{i}"
            while not target.exists() or not target.read_text().strip():
                time.sleep(0.002)
            lat.append(float(target.read_text().split()[0]) - t0)
            while any(q != "done" for q in server.queues().values()):
                time.sleep(0.02)
        assert daemon.proc is not None
        proc = psutil.Process(daemon.proc.pid)
        # idle footprint: after the latency runs, nothing queued
        time.sleep(1)
        cpu0 = proc.cpu_times()
        w0 = time.monotonic()
        time.sleep(args.idle_seconds)
        cpu1 = proc.cpu_times()
        idle_cpu = ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (
            time.monotonic() - w0) * 100
        rss = proc.memory_info().rss / 1e6
        daemon.signal(15)
        daemon.wait(60)

        home2 = tmp / "home2"
        home2.mkdir()
        d2 = DaemonProc(home2, server, "bench2")
        d2.register()
        for i in range(args.runs):
            server.submit("bench", "wf.yaml", params={"dir": str(side), "n": f"tp{i}"})
        t0 = time.monotonic()
        d2.start("--concurrency", "2", "--log-level", "warning")
        while any(q != "done" for q in server.queues().values()):
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        d2.signal(15)
        d2.wait(60)
        rate = args.runs / elapsed

        p50, p99 = statistics.median(lat), pct(lat, 99)
        f50, f99 = statistics.median(floor), pct(floor, 99)
        rows = [
            ("run created -> first step running, p50", f"{p50 * 1000:.0f} ms",
             f"{f50 * 1000:.0f} ms (create -> claim answered)", f"{p50 / f50:.1f}x"),
            ("run created -> first step running, p99", f"{p99 * 1000:.0f} ms",
             f"{f99 * 1000:.0f} ms", f"{p99 / f99:.1f}x"),
            (f"{args.runs} trivial runs, --concurrency 2 (incl. daemon start)",
             f"{rate:.1f} runs/s", "-", "-"),
            ("idle daemon RSS", f"{rss:.1f} MB", "target < 60 MB", "-"),
            (f"idle daemon CPU over {args.idle_seconds:.0f} s", f"{idle_cpu:.2f} %",
             "target < 1 %", "-"),
        ]
    finally:
        server.kill()
    header = ("| measure | ferry daemon | floor | ratio |\n|---|---|---|---|\n")
    table = header + "".join(f"| {a} | {b} | {c} | {d} |\n" for a, b, c, d in rows)
    machine = f"{os.cpu_count()} cores, {Path('/etc/debian_version').read_text().strip()}"
    text = (f"# Daemon benchmark\n\nMachine: {machine} (Debian), Python "
            f"{sys.version.split()[0]}; stub server and daemon on 127.0.0.1.\n"
            f"{load_note(load, waited, args.max_load)}\n"
            f"Command: `python bench/daemon_bench.py --runs {args.runs} --latency-runs "
            f"{args.latency_runs} --idle-seconds {args.idle_seconds:g}`\n\n{table}")
    out = ROOT / "bench" / "results" / "daemon_bench.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
