"""The `StateBackend` contract, one suite for every implementation (as the runtimes share one):
the local SQLite backend, the journal-first API backend (`backend: api` of `ferry run -c`)
delivering to the reference server over real HTTP, and the `database` backend on a real
PostgreSQL.

Each test takes a `Harness` that makes the backend and can open it again (a new process's view);
for the API backend the harness also checks that what the backend says is what the server has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner.api.client import ControlClient
from runner.diff import Diff, PatchConflict
from runner.document import add_task_op, new_run, new_task, state_set_op, task_field_op
from runner.errors import SeqGap, UnknownRun
from runner.state.backend import StateBackend
from runner.state.local import LocalBackend
from runner.state.reporting import ReportingBackend
from tests.integration.sync.conftest import StubServer


@dataclass
class Harness:
    """One backend under test, and how to see its state from a fresh instance."""

    open: Callable[[], StateBackend]
    server_doc: Callable[[str], dict[str, Any] | None]
    """The run as the control plane has it (None for backends without one)."""

    def __post_init__(self) -> None:
        self.backend = self.open()

    def reopen(self) -> StateBackend:
        """Close the backend and open it again (what the next `ferry` command sees)."""
        self.backend.close()
        self.backend = self.open()
        return self.backend


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubServer]:
    server = StubServer(tmp_path_factory.mktemp("contract-stub"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _local(tmp_path: Path, stub: StubServer) -> Harness:
    return Harness(lambda: LocalBackend(tmp_path / "ferry.db", tmp_path / "logs"),
                   lambda run_id: None)


def _api(tmp_path: Path, stub: StubServer) -> Harness:
    _, token = stub.register("contract")

    def make() -> StateBackend:
        mirror = LocalBackend(tmp_path / "ferry.db", tmp_path / "logs")
        return ReportingBackend(ControlClient(stub.url, token), tmp_path / "journal",
                                tmp_path / "logs", mirror=mirror)

    def server_doc(run_id: str) -> dict[str, Any] | None:
        resp = stub.admin_get(f"/runs/{run_id}")
        doc: dict[str, Any] = resp.json()
        return doc

    return Harness(make, server_doc)


def _database(tmp_path: Path, stub: StubServer, url: str) -> Harness:
    from runner.state.database import DatabaseBackend

    return Harness(lambda: DatabaseBackend(url), lambda run_id: None)


@pytest.fixture(params=["local", "api", "database"])
def harness(request: pytest.FixtureRequest, tmp_path: Path,
            stub: StubServer) -> Iterator[Harness]:
    if request.param == "database":
        made = _database(tmp_path, stub, request.getfixturevalue("pg_url"))
    else:
        made = {"local": _local, "api": _api}[request.param](tmp_path, stub)
    try:
        yield made
    finally:
        made.backend.close()


def _run(backend: StateBackend, tasks: int = 2) -> dict[str, Any]:
    doc = new_run({"version": "1", "nodes": []}, name="wf", params={"a": "b"},
                  created_at="2024-01-01T00:00:00Z")
    backend.create_run(doc)
    ops = [add_task_op(new_task(f"n{i}", task_id=f"{doc['id']}-t{i}")) for i in range(tasks)]
    assert backend.apply(Diff(doc["id"], "setup", 1, ops))
    return doc


def _delivered(harness: Harness, run_id: str) -> dict[str, Any] | None:
    """Reopening flushes a journal-first backend; then the server's copy is compared."""
    harness.reopen()
    return harness.server_doc(run_id)


def test_create_load_and_resolve_prefixes(harness: Harness) -> None:
    backend = harness.backend
    run = _run(backend)
    assert backend.load(run["id"])["params"] == {"a": "b"}
    assert backend.resolve_run_id(run["id"]) == run["id"]
    assert backend.resolve_run_id(run["id"][:8]) == run["id"]
    with pytest.raises(UnknownRun):
        backend.resolve_run_id("ffffffff-0000")
    with pytest.raises(UnknownRun):
        backend.load("ffffffff-0000-4000-8000-000000000000")


def test_apply_is_idempotent_per_writer_and_seq(harness: Harness) -> None:
    backend = harness.backend
    run = _run(backend)
    append = [{"op": "add", "path": "/state/items/-", "value": 1}]
    assert backend.apply(Diff(run["id"], "w", 1, [state_set_op("items", [])]))
    assert backend.apply(Diff(run["id"], "w", 2, append))
    assert not backend.apply(Diff(run["id"], "w", 2, append))  # seen: acknowledged, not applied
    assert backend.load(run["id"])["state"]["items"] == [1]
    server = _delivered(harness, run["id"])
    assert harness.backend.load(run["id"])["state"]["items"] == [1]
    if server is not None:
        assert server["state"]["items"] == [1]


def test_seq_gap_and_conflict_change_nothing(harness: Harness) -> None:
    backend = harness.backend
    run = _run(backend)
    before = backend.load(run["id"])
    with pytest.raises(SeqGap) as gap:
        backend.apply(Diff(run["id"], "w", 3, [state_set_op("x", 1)]))
    assert gap.value.expected == 1
    with pytest.raises(PatchConflict):
        backend.apply(Diff(run["id"], "w", 1, [state_set_op("ok", 1),
                                               {"op": "remove", "path": "/tasks/nope"}]))
    assert backend.load(run["id"]) == before
    assert backend.apply(Diff(run["id"], "w", 1, [state_set_op("ok", 2)]))  # seq 1 still free
    assert backend.load(run["id"])["state"] == {"ok": 2}


def test_position_and_history(harness: Harness) -> None:
    backend = harness.backend
    run = _run(backend)
    tid = next(iter(backend.load(run["id"])["tasks"]))
    for seq in (1, 2, 3):
        backend.apply(Diff(run["id"], "runner/a1", seq,
                           [task_field_op(tid, "attempt", seq)]))
    assert backend.position(run["id"], "runner/a1")[1] == 3
    assert backend.position(run["id"], "someone-else")[1] == 0
    history = backend.history(run["id"])
    assert [(d.writer, d.seq) for d in history] == [("setup", 1), ("runner/a1", 1),
                                                    ("runner/a1", 2), ("runner/a1", 3)]
    again = harness.reopen()
    assert again.position(run["id"], "runner/a1")[1] == 3  # a new process resumes at seq 4


def test_logs_append_and_read_from_an_offset(harness: Harness) -> None:
    backend = harness.backend
    run = _run(backend)
    tid = next(iter(backend.load(run["id"])["tasks"]))
    backend.append_log(run["id"], tid, b"one\n")
    backend.append_log(run["id"], tid, b"two\n")
    assert backend.read_log(run["id"], tid) == b"one\ntwo\n"
    assert backend.read_log(run["id"], tid, 4) == b"two\n"
    _delivered(harness, run["id"])
    assert harness.backend.read_log(run["id"], tid) == b"one\ntwo\n"


def test_list_runs_newest_first_and_by_status(harness: Harness) -> None:
    backend = harness.backend
    first, second = _run(backend), _run(backend)
    backend.apply(Diff(second["id"], "w", 1, [{"op": "replace", "path": "/status",
                                               "value": "Running"}]))
    listed = [r.id for r in backend.list_runs(limit=50)]
    assert first["id"] in listed and second["id"] in listed
    running = [r.id for r in backend.list_runs(limit=50, status="Running")]
    assert second["id"] in running and first["id"] not in running


def test_close_keeps_everything_for_the_next_process(harness: Harness) -> None:
    backend = harness.backend
    run = _run(backend, tasks=3)
    backend.apply(Diff(run["id"], "w", 1, [state_set_op("k", {"v": [1, 2]})]))
    expected = backend.load(run["id"])
    server = _delivered(harness, run["id"])
    assert harness.backend.load(run["id"]) == expected
    if server is not None:
        assert server["state"] == expected["state"] and server["tasks"] == expected["tasks"]
