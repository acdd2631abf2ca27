"""The dashboard's server time per page with 10,000 runs in the database.

The data dir is filled in-process through the server's own operations (`users.create_run`,
then one server diff per run giving it tasks and an outcome, a mix of Completed, Failed,
Canceled and Running; one big run with a 60-item matrix and 300 diffs), then `ferry-server`
starts on it as a real subprocess on 127.0.0.1. Each page is fetched `--repeat` times over HTTP
by a signed-in session; the server's own `Server-Timing: app;dur=` header is the server time.
The peer in the same run: the API's `GET /api/v1/runs?limit=50` (the same 50 rows as JSON;
its time is the client-measured round trip, the API sends no Server-Timing).

Prints a table and writes bench/results/dashboard.md.
    python bench/dashboard.py [--runs 10000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import add_quiet_options, load_note, pct, publish, wait_for_quiet  # noqa: E402

from runner.api.protocol import CreateRunRequest  # noqa: E402
from runner.document import new_task, run_field_op  # noqa: E402
from server_stub import runs, users  # noqa: E402
from server_stub.auth import ADMIN, REGISTRATION, load_secret  # noqa: E402
from server_stub.config import ServerConfig  # noqa: E402
from server_stub.core import Core  # noqa: E402
from server_stub.testing import StubProcess  # noqa: E402
from tests.helpers.dashboard import sign_in  # noqa: E402
from tests.helpers.gitrepo import commit, init_bare  # noqa: E402

WORKFLOW = """version: "1"
name: bench
params:
  schema:
    region: {type: string, default: eu}
    token: {type: string, secret: true, default: "not-a-real-secret"}
nodes:
  - id: build
    steps: [{name: build, run: echo build}]
  - id: test
    depends_on: [build]
    strategy: {type: matrix, values: [%s]}
    steps: [{name: test, run: echo test}]
  - id: ship
    depends_on: [test]
    steps: [{name: ship, run: echo ship}]
"""
OUTCOMES = ["Completed", "Completed", "Completed", "Failed", "Canceled", "Running"]


def fill(data: Path, repos: Path, count: int) -> str:
    """`count` runs through the server's operations; returns the id of the big one."""
    small = WORKFLOW % ", ".join(f"{{n: {i}}}" for i in range(3))
    big = WORKFLOW % ", ".join(f"{{n: {i}}}" for i in range(60))
    for name in ("bench", "other"):
        commit(init_bare(repos, name), {"wf.yaml": small, "big.yaml": big})
    core = Core.open(ServerConfig(data_dir=data, repos_dir=repos),
                     load_secret(data, ADMIN, "bench-admin-token"),
                     load_secret(data, REGISTRATION, "bench-registration-token"))
    started = time.monotonic()
    big_id = ""
    for i in range(count):
        path = "big.yaml" if i == count // 2 else "wf.yaml"
        info = users.create_run(core, CreateRunRequest(
            repo="bench" if i % 4 else "other", ref="main", workflow_path=path,
            params={"region": ["eu", "us"][i % 2]}, labels=["nobody"]))
        width = 60 if path == "big.yaml" else 3
        master = new_task("test", master=True)
        tasks = [new_task("build"), master, *[new_task("test", parent=master["id"],
                                                       matrix={"n": n}) for n in range(width)],
                 new_task("ship")]
        outcome = OUTCOMES[i % len(OUTCOMES)]
        for task in tasks:
            task["status"] = "Completed" if outcome != "Running" else "Running"
            task["started_at"], task["ended_at"] = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"
        ops = [{"op": "add", "path": f"/tasks/{t['id']}", "value": t} for t in tasks]
        ops += [run_field_op("status", outcome),
                run_field_op("started_at", "2026-01-01T00:00:00Z")]
        if outcome != "Running":
            ops.append(run_field_op("ended_at", "2026-01-01T00:01:00Z"))
        with core.tx(info.id) as conn:
            runs.server_diff(conn, core.docs, info.id, ops)
            if path == "big.yaml":
                big_id = info.id
                for k in range(300):  # a long history
                    runs.server_diff(conn, core.docs, info.id,
                                     [{"op": "add", "path": f"/state/k{k}", "value": k}])
    core.db.close()
    print(f"filled {count} runs in {time.monotonic() - started:.1f}s", flush=True)
    return big_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    add_quiet_options(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ferry-bench-dash-") as tmp:
        data, repos = Path(tmp) / "data", Path(tmp) / "repos"
        repos.mkdir()
        big = fill(data, repos, args.runs)
        load, waited = wait_for_quiet(args.max_load, args.quiet_wait)
        with StubProcess.start(data, repos, admin_token="bench-admin-token",
                               registration_token="bench-registration-token") as stub:
            for i in range(20):
                requests.post(stub.url + "/api/v1/runners/register",
                              json={"name": f"runner-{i:02d}", "labels": ["linux"]},
                              headers={"Authorization": "Bearer bench-registration-token"},
                              timeout=30).raise_for_status()
            session = sign_in(stub.url, "bench-admin-token")
            pages = {
                "runs list (page 1)": "/runs",
                "runs list, status=Failed": "/runs?status=Failed",
                "runs list, repo=bench, page 100": "/runs?repo=bench&page=100",
                "runs list, last page": f"/runs?page={-(-args.runs // 50)}",
                "run page (64 tasks, 301 diffs)": f"/runs/{big}",
                "runners (20)": "/runners",
                "new run form (params at a ref)": "/new?repo=bench&ref=main&workflow_path=wf.yaml",
            }
            rows = []
            for name, path in pages.items():
                server_ms: list[float] = []
                for _ in range(args.repeat):
                    resp = session.get(stub.url + path, timeout=60)
                    resp.raise_for_status()
                    timing = resp.headers["server-timing"]
                    server_ms.append(float(timing.split("dur=")[1]))
                rows.append((name, pct(server_ms, 50), pct(server_ms, 95), max(server_ms)))
            api_ms = []
            for _ in range(args.repeat):
                begin = time.perf_counter()
                requests.get(stub.url + "/api/v1/runs?limit=50", timeout=60,
                             headers=stub.admin_headers).raise_for_status()
                api_ms.append((time.perf_counter() - begin) * 1000)
            after = load_note(load, waited, args.max_load)
    floor = pct(api_ms, 50)
    lines = ["# Dashboard: server time per page", "",
             f"{args.runs:,} runs in the database (SQLite), {args.repeat} requests per page, "
             f"server time from the server's `Server-Timing` header. Peer in the same run: "
             f"`GET /api/v1/runs?limit=50` (client round trip, p50 {floor:.1f} ms).",
             f"Machine: {platform.machine()}, Python {platform.python_version()}. {after}", "",
             "| page | p50 ms | p95 ms | max ms | p50 / API list p50 | under 100 ms (p95) |",
             "|---|---|---|---|---|---|"]
    for name, p50, p95, top in rows:
        lines.append(f"| {name} | {p50:.1f} | {p95:.1f} | {top:.1f} | {p50 / floor:.2f} | "
                     f"{'yes' if p95 < 100 else 'NO'} |")
    publish("\n".join(lines) + "\n", ROOT / "bench" / "results" / "dashboard.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
