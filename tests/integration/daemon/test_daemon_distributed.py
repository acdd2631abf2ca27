"""Distributed runs over real daemons: the server leases a run's ready tasks one by one, several
daemons work one run at once, a killed daemon's task runs again elsewhere (completed tasks
never), a cancel stops them, and concurrent writers keep the document consistent. On SQLite and
on PostgreSQL."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_until
from tests.integration.daemon.conftest import Server

GATED = """\
version: "1"
params:
  schema:
    gate: {type: string}
nodes:
  - id: setup
    steps:
      - run: echo setup
  - id: shard
    depends_on: [setup]
    strategy:
      type: matrix
      values: [{item: a}, {item: b}, {item: c}, {item: d}]
    steps:
      - run: |
          while [ ! -f "${{ params.gate }}" ] && [ "$item" != c ] && [ "$item" != d ]; do
            sleep 0.05
          done
          echo "shard $item"
  - id: report
    depends_on: [shard]
    steps:
      - run: echo report
"""

APPEND = """\
version: "1"
state:
  schema:
    done: {type: array, items: {type: string}}
nodes:
  - id: fan
    strategy:
      type: matrix
      values: [{FAN_VALUES}]
    steps:
      - run: |
          echo "done@=\\"$item\\"" >> "$STATE_OUTPUTS"
          echo "item=$item" >> "$TASK_OUTPUTS"
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def dist_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """A stub with short leases (lost runners are noticed in 1.5 s), on each store."""
    extra = ["--database", request.getfixturevalue("pg_url")] \
        if request.param == "postgresql" else []
    srv = Server(tmp_path / "server", *extra, lease_ttl=1, offline_grace=0.5)
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


def _tasks(server: Server, run_id: str) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in server.run(run_id)["tasks"].values() if not t.get("master")}


def _by_item(server: Server, run_id: str) -> dict[str, dict[str, Any]]:
    return {(t.get("matrix") or {}).get("item", t["node_id"]): t
            for t in _tasks(server, run_id).values()}


def _runners_of(server: Server, run_id: str) -> dict[str, set[str]]:
    """Task id -> the runner ids whose task writers wrote to it (`<runner>/<task>/a<n>`)."""
    doc = server.admin_call("GET", f"/runs/{run_id}", params={"history": "true"}).json()
    out: dict[str, set[str]] = {}
    for diff in doc["history"]:
        parts = diff["writer"].split("/")
        if len(parts) == 3:
            out.setdefault(parts[1], set()).add(parts[0])
    return out


def test_two_daemons_work_one_run_at_once(dist_server: Server, make_daemon: Any,
                                          tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    dist_server.repo("demo", {"gated.yaml": GATED})
    run_id = dist_server.submit("demo", "gated.yaml", params={"gate": str(gate)},
                                distributed=True)
    daemons = [make_daemon(dist_server, name) for name in ("one", "two")]
    for daemon in daemons:
        daemon.register()
        daemon.start("--concurrency", "2")
    # shards a and b wait for the gate: with 2 slots each, both daemons must hold tasks of the
    # run before the gate opens (c and d end at once and free their slots)
    try:
        wait_until(lambda: sum(t["status"] == "Running"
                               for t in _tasks(dist_server, run_id).values()) == 2
                   and all(_by_item(dist_server, run_id).get(i, {}).get("status") == "Completed"
                           for i in ("c", "d")), timeout=60,
                   message="shards a and b running, c and d done")
        gate.write_text("open")
        wait_until(lambda: dist_server.status(run_id) == "Completed", timeout=60,
                   message="the run to complete")
    finally:
        for daemon in daemons:
            daemon.signal(signal.SIGTERM)
        for daemon in daemons:
            daemon.wait(60)
    tasks = _tasks(dist_server, run_id)
    assert all(t["status"] == "Completed" and t["attempt"] == 1 for t in tasks.values()), tasks
    runners = _runners_of(dist_server, run_id)
    assert set(runners) == set(tasks), "a task was not written by its own task writer"
    assert all(len(r) == 1 for r in runners.values()), runners
    assert len(set().union(*runners.values())) == 2, f"one daemon did all the work: {runners}"
    info = dist_server.info(run_id)
    assert info["queue"] == "done" and info["distributed"] is True
    for task in tasks.values():
        item = (task.get("matrix") or {}).get("item")
        if item:
            assert dist_server.task_log(run_id, task["id"]) == f"shard {item}\n".encode()
    for daemon in daemons:  # each fetched the archive of the commit once (cached by commit)
        archives = list((daemon.home / "cache").rglob(".ferry-archive.tar.gz"))
        assert len(archives) == 1, archives
        # every task job's journal was delivered and its folder removed
        left = list((daemon.home / "data" / "journal").rglob("*"))
        assert left in ([], [daemon.home / "data" / "journal" / "tasks"]), left


def test_a_killed_daemon_s_task_runs_again_elsewhere(dist_server: Server, make_daemon: Any,
                                                     tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    dist_server.repo("demo", {"gated.yaml": GATED})
    run_id = dist_server.submit("demo", "gated.yaml", params={"gate": str(gate)},
                                distributed=True)
    first = make_daemon(dist_server, "first")
    first.register()
    first.start("--concurrency", "4")
    wait_until(lambda: {i: t["status"] for i, t in _by_item(dist_server, run_id).items()
                        if i in "abcd"} == {"a": "Running", "b": "Running", "c": "Completed",
                                            "d": "Completed"}, timeout=60,
               message="a and b running on the first daemon, c and d done")
    first.kill()  # SIGKILL: its leases expire
    done_before = {i: t["ended_at"] for i, t in _by_item(dist_server, run_id).items()
                   if i in ("setup", "c", "d")}
    gate.write_text("open")
    second = make_daemon(dist_server, "second")
    second.register()
    second.start("--concurrency", "4")
    try:
        wait_until(lambda: dist_server.status(run_id) == "Completed", timeout=90,
                   message="the run to complete on the second daemon")
    finally:
        second.signal(signal.SIGTERM)
        second.wait(60)
    items = _by_item(dist_server, run_id)
    for item in ("a", "b"):
        assert items[item]["attempt"] == 2 and items[item]["interrupted"] == 1, items[item]
    for item, ended in done_before.items():  # completed work is never run again
        assert items[item]["attempt"] == 1 and items[item]["ended_at"] == ended, items[item]


def test_cancel_stops_the_tasks_of_a_distributed_run(dist_server: Server, make_daemon: Any,
                                                     tmp_path: Path) -> None:
    dist_server.repo("demo", {"gated.yaml": GATED})
    run_id = dist_server.submit("demo", "gated.yaml", params={"gate": str(tmp_path / "never")},
                                distributed=True)
    daemon = make_daemon(dist_server)
    daemon.register()
    daemon.start("--concurrency", "4")
    try:
        wait_until(lambda: sum(t["status"] == "Running"
                               for t in _tasks(dist_server, run_id).values()) == 2, timeout=60,
                   message="two shards running")
        dist_server.cancel(run_id)
        wait_until(lambda: dist_server.status(run_id) == "Canceled", timeout=30,
                   message="the run to end Canceled")
    finally:
        daemon.signal(signal.SIGTERM)
        daemon.wait(60)
    items = _by_item(dist_server, run_id)
    assert items["a"]["status"] == "Failed" and items["a"].get("canceled") is True, items["a"]
    assert items["report"]["status"] == "WontDo"
    assert dist_server.info(run_id)["queue"] == "done"


def test_concurrent_task_writers_keep_the_document_consistent(
        dist_server: Server, make_daemon: Any) -> None:
    items = [f"i{n:02d}" for n in range(24)]
    dist_server.repo("demo", {"append.yaml": APPEND.replace(
        "{FAN_VALUES}", ", ".join(f"{{item: {i}}}" for i in items))})
    run_id = dist_server.submit("demo", "append.yaml", distributed=True)
    daemons = [make_daemon(dist_server, name) for name in ("one", "two", "three")]
    for daemon in daemons:
        daemon.register()
        daemon.start("--concurrency", "4")
    try:
        wait_until(lambda: dist_server.status(run_id) == "Completed", timeout=120,
                   message="the run to complete")
    finally:
        for daemon in daemons:
            daemon.signal(signal.SIGTERM)
        for daemon in daemons:
            daemon.wait(60)
    doc = dist_server.run(run_id)
    assert Counter(doc["state"]["done"]) == Counter(items), doc["state"]
    outputs = {t["matrix"]["item"]: t.get("outputs") for t in doc["tasks"].values()
               if not t.get("master")}
    assert outputs == {i: {"item": i} for i in items}
    runners = _runners_of(dist_server, run_id)
    print(f"\ntasks per runner: {Counter(next(iter(r)) for r in runners.values())}")
    assert all(len(r) == 1 for r in runners.values())
