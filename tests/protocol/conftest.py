"""The conformance suite's server: the stub as a real subprocess on an ephemeral port, once per
store (`--store sqlite,postgresql,replicas`, all three by default: SQLite in its data dir; one
server on PostgreSQL; two servers on one PostgreSQL behind a round-robin proxy), or any server
given with `pytest tests/protocol --server URL --token ADMIN --registration-token REG
[--server-repos DIR]` (DIR: a directory that server serves bare repositories from)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server_stub.testing import StubProcess
from tests.helpers.gitrepo import commit, init_bare
from tests.helpers.replicas import Replicas
from tests.protocol.api import (
    WORKFLOW_BAD,
    WORKFLOW_DISTRIBUTED,
    WORKFLOW_MANUAL,
    WORKFLOW_OK,
    Server,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """--server/--token/--registration-token/--server-repos."""
    group = parser.getgroup("ferry-protocol", "Ferry protocol v1 conformance")
    group.addoption("--server", default=None, help="URL of a control plane to test")
    group.addoption("--token", default=None, help="its admin token")
    group.addoption("--registration-token", default=None, help="its registration token")
    group.addoption("--server-repos", default=None, help="directory of its bare repositories")
    group.addoption("--store", default="sqlite,postgresql,replicas",
                    help="the stub's stores to run the suite on (comma-separated)")


STORES = ("sqlite", "postgresql", "replicas")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses the stub runs once per store asked for."""
    if "store" in metafunc.fixturenames:
        wanted = [s.strip() for s in metafunc.config.getoption("--store").split(",") if s.strip()]
        unknown = set(wanted) - set(STORES)
        if unknown:
            raise pytest.UsageError(f"--store: unknown {', '.join(sorted(unknown))} "
                                    f"(known: {', '.join(STORES)})")
        if metafunc.config.getoption("--server", default=None):
            wanted = ["external"]
        metafunc.parametrize("store", wanted, scope="session")


def start_stub(store: str, base: Path, request: pytest.FixtureRequest, *extra: str) -> Any:
    """A stub on `store` (a StubProcess, or Replicas behind a proxy), started."""
    if store == "sqlite":
        return StubProcess.start(base / "data", base / "repos", *extra)
    url = request.getfixturevalue("pg_cluster").new_database()
    if store == "postgresql":
        return StubProcess.start(base / "data", base / "repos", "--database", url, *extra)
    return Replicas(base, url, *extra)


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           store: str) -> Iterator[Server]:
    """The server under test."""
    url = request.config.getoption("--server", default=None)
    if url:
        token = request.config.getoption("--token")
        reg = request.config.getoption("--registration-token")
        if not token or not reg:
            pytest.exit("--server needs --token (admin) and --registration-token", 2)
        repos = request.config.getoption("--server-repos")
        yield Server(url.rstrip("/"), token, reg, Path(repos) if repos else None)
        return
    base = tmp_path_factory.mktemp(f"stub-{store}")
    with start_stub(store, base, request) as stub:
        yield Server(stub.url, stub.admin_token, stub.registration_token, stub.repos_dir)


@pytest.fixture(scope="session")
def is_stub(request: pytest.FixtureRequest) -> bool:
    """True when the suite runs against its own stub (server flags can be chosen)."""
    return not request.config.getoption("--server", default=None)


@pytest.fixture(scope="session")
def repo(server: Server) -> dict[str, str]:
    """A repository on the server with the suite's workflows: name, sha, the sha of an older
    commit and a tag."""
    if server.repos_dir is None:
        pytest.skip("the server's repository directory is unknown (pass --server-repos)")
    name = f"conf-{uuid.uuid4().hex[:8]}"
    bare = init_bare(server.repos_dir, name)
    old = commit(bare, {"ok.yaml": WORKFLOW_OK}, message="first")
    sha = commit(bare, {"ok.yaml": WORKFLOW_OK, "manual.yaml": WORKFLOW_MANUAL,
                        "bad.yaml": WORKFLOW_BAD, "dir/data.bin": bytes(range(256)),
                        "distributed.yaml": WORKFLOW_DISTRIBUTED,
                        "README": "conformance\n"}, message="second", tag="v1")
    return {"name": name, "sha": sha, "old": old, "tag": "v1"}


@pytest.fixture
def stub(tmp_path: Path, is_stub: bool, store: str, request: pytest.FixtureRequest
         ) -> Iterator[StubProcess]:
    """A private stub with short leases (1 s TTL, 0.5 s grace) for expiry and fencing tests,
    on the store under test."""
    if not is_stub:
        pytest.skip("lease timings are a server flag: tested against the stub only")
    with start_stub(store, tmp_path, request, "--lease-ttl", "1", "--offline-grace",
                    "0.5") as stub:
        yield stub
