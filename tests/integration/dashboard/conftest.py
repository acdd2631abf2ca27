"""One server for the dashboard's HTTP tests, with a repository of workflows."""

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


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubProcess]:
    """The server (a real process on 127.0.0.1) with repository `dash`."""
    root: Path = tmp_path_factory.mktemp("dash")
    with StubProcess.start(root / "data", root / "repos") as server:
        commit(init_bare(root / "repos", "dash"), {"gate.yaml": MANUAL, "secret.yaml": SECRET,
                                                   "bad.yaml": "version: 1\nnodes: []\n"})
        yield server
