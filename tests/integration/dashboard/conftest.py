"""One server for the dashboard's HTTP tests, with a repository of workflows, on each store:
SQLite in its data dir, and PostgreSQL (a throwaway cluster; in CI it must be there)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server_stub.testing import StubProcess
from tests.helpers.gitrepo import commit, init_bare

MANUAL = """version: "1"
name: gate
nodes:
  - id: build
    steps: [{name: build, run: echo built}]
  - id: approve
    type: manual
    depends_on: [build]
    steps: [{name: ok, run: echo approved}]
"""

SECRET = """version: "1"
name: with-secret
params:
  schema:
    region:
      type: string
      description: where to deploy
      oneOf: [{type: string, enum: [eu, us]}]
      default: eu
    api_key:
      type: string
      secret: true
    dry_run:
      type: boolean
      default: true
nodes:
  - id: show
    steps: [{name: show, run: "echo region=${{ params.region }}"}]
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[StubProcess]:
    """The server (a real process on 127.0.0.1) with repository `dash`; `.database` is its
    PostgreSQL URL (None on SQLite)."""
    root: Path = tmp_path_factory.mktemp(f"dash-{request.param}")
    database = None
    extra: list[str] = []
    if request.param == "postgresql":
        database = request.getfixturevalue("pg_cluster").new_database()
        extra = ["--database", database]
    with StubProcess.start(root / "data", root / "repos", *extra) as server:
        server.database = database  # type: ignore[attr-defined]
        commit(init_bare(root / "repos", "dash"), {"gate.yaml": MANUAL, "secret.yaml": SECRET,
                                                   "bad.yaml": "version: 1\nnodes: []\n"})
        yield server


def sql(stub: StubProcess, statement: str, args: tuple[object, ...] = ()) -> list[dict]:
    """Run one statement on the server's database (`?` placeholders); its rows as dicts."""
    database = getattr(stub, "database", None)
    if database is None:
        import sqlite3

        conn = sqlite3.connect(stub.data_dir / "server.db", timeout=30)
        conn.row_factory = sqlite3.Row
        with conn:
            rows = [dict(r) for r in conn.execute(statement, args)]
        conn.close()
        return rows
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(database, autocommit=True, row_factory=dict_row) as conn:
        cur = conn.execute(statement.replace("?", "%s"), args)  # type: ignore[arg-type]
        return list(cur.fetchall()) if cur.description else []
