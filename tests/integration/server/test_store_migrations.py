"""The store's schema versions: old SQLite data dirs migrate in place, a schema newer than the
server is refused, servers starting together on one PostgreSQL migrate it once, and a database
that cannot be opened is one line and exit 5."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from runner.document import new_run
from server_stub.store.schema import _SQLITE_V1
from server_stub.testing import StubProcess
from tests.protocol.api import Server

ROOT = Path(__file__).resolve().parents[3]


def ferry_server(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m server_stub ARGS` to completion (tokens given: nothing else is printed)."""
    env = {**os.environ, "FERRY_SERVER_ADMIN_TOKEN": "fa_test",
           "FERRY_SERVER_REGISTRATION_TOKEN": "fr_test"}
    return subprocess.run([sys.executable, "-m", "server_stub", *args], capture_output=True,
                          text=True, timeout=90, cwd=ROOT, env=env)


def _versions_sqlite(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def _versions_pg(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def test_a_data_dir_from_before_migrations_is_migrated_in_place(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    doc = new_run({"version": "1", "nodes": []}, name="old", params={},
                  created_at="2025-01-01T00:00:00.000Z")
    doc["started_at"], doc["ended_at"] = "2025-01-01T00:00:01.000Z", "2025-01-01T00:00:02.000Z"
    with sqlite3.connect(data / "server.db") as conn:  # the schema of the last release
        conn.executescript(_SQLITE_V1)
        conn.execute("INSERT INTO runs (id, name, repo, commit_sha, workflow_path, params, labels,"
                     " queue, status, workflow_digest, created_at, doc) VALUES"
                     " (?,?,?,?,?,?,?,?,?,?,?,?)",
                     (doc["id"], "old", "demo", "0" * 40, "ok.yaml", "{}", "[]", "done",
                      "Completed", "", doc["created_at"], json.dumps(doc)))
    with StubProcess.start(data, tmp_path / "repos") as stub:
        server = Server(stub.url, stub.admin_token, stub.registration_token, stub.repos_dir)
        runs = server.admin.ok("GET", "/runs")["runs"]
    assert [(r["id"], r["started_at"], r["ended_at"]) for r in runs] == [
        (doc["id"], "2025-01-01T00:00:01.000Z", "2025-01-01T00:00:02.000Z")]
    assert _versions_sqlite(data / "server.db") == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_schema_newer_than_the_server_is_refused_in_one_line(
        tmp_path: Path, store: str, request: pytest.FixtureRequest) -> None:
    data, repos = tmp_path / "data", tmp_path / "repos"
    repos.mkdir()
    extra: list[str] = []
    if store == "postgresql":
        url = request.getfixturevalue("pg_url")
        extra = ["--database", url]
    with StubProcess.start(data, repos, *extra):
        pass  # created and migrated
    if store == "postgresql":
        with psycopg.connect(url) as conn:
            conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', 0)")
    else:
        with sqlite3.connect(data / "server.db") as conn:
            conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', 0)")
    done = ferry_server("--data-dir", str(data), "--repos", str(repos), "--port", "0", *extra)
    assert done.returncode == 5, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "schema version(s) 99, newer than this server knows" in lines[0]


def test_servers_starting_together_migrate_an_empty_database_once(tmp_path: Path,
                                                                  pg_url: str) -> None:
    key = str(tmp_path / "secrets.key")
    procs = [StubProcess(tmp_path / f"d{i}", tmp_path / "repos", "--database", pg_url,
                         "--secrets-key", key) for i in range(3)]
    errors: list[BaseException] = []

    def launch(proc: StubProcess) -> None:
        try:
            proc.launch()
        except BaseException as exc:  # reported below with the others
            errors.append(exc)

    threads = [threading.Thread(target=launch, args=(p,)) for p in procs]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        assert errors == []
        assert all(p.running for p in procs)
    finally:
        for proc in procs:
            proc.stop()
    assert _versions_pg(pg_url) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(("url", "code", "says"), [
    ("postgresql://postgres@127.0.0.1:1/nowhere", 5, "cannot open the database"),
    ("sqlite:///tmp/x.db", 2, "--database must be a postgresql:// URL"),
])
def test_a_database_that_cannot_be_used_is_one_line(tmp_path: Path, url: str, code: int,
                                                    says: str) -> None:
    (tmp_path / "repos").mkdir()
    done = ferry_server("--data-dir", str(tmp_path / "data"), "--repos", str(tmp_path / "repos"),
                        "--port", "0", "--database", url)
    assert done.returncode == code, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
