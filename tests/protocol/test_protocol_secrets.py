"""Secrets on the control plane: admin-only, names only listed, encrypted at rest, handed out
only in the claim of a run of their repository; params declared secret never in the document."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

from server_stub.testing import StubProcess
from tests.helpers.gitrepo import commit, init_bare
from tests.protocol.api import WORKFLOW_OK, Api, Server

VALUE = "s3cr3t-" + uuid.uuid4().hex
SECRET_PARAMS = """\
version: "1"
params:
  schema:
    api_key: {type: string, secret: true}
    region: {type: string}
nodes:
  - id: a
    steps:
      - run: echo ${{ params.region }}
"""


def _repo(server: Server, files: dict[str, str]) -> str:
    name = f"sec-{uuid.uuid4().hex[:8]}"
    commit(init_bare(server.repos_dir, name), files, message="one")
    return name


def test_set_list_remove_by_admin_only_and_names_only(server: Server, repo: dict[str, str]
                                                     ) -> None:
    admin = server.admin
    name = f"TOKEN_{uuid.uuid4().hex[:6]}"
    info = admin.ok("PUT", f"/secrets/{name}", params={"repo": repo["name"]},
                    json={"value": VALUE})
    assert info["name"] == name and info["repo"] == repo["name"] and "value" not in info
    listed = admin.ok("GET", "/secrets", params={"repo": repo["name"]})
    assert [s["name"] for s in listed["secrets"]] == [name]
    assert VALUE not in str(listed)
    assert name not in str(admin.ok("GET", "/secrets"))       # not a global secret
    runner = server.register()
    rows = []
    for method, path, kw in (("PUT", f"/secrets/{name}", {"json": {"value": VALUE}}),
                             ("GET", "/secrets", {}), ("DELETE", f"/secrets/{name}", {})):
        for who, api, want in (("runner", runner.api, 403), ("none", Api(server.url, None), 401),
                               ("registration", Api(server.url, server.registration_token),
                                403)):
            got = api.call(method, path, params={"repo": repo["name"]}, **kw).status_code
            rows.append((method, path.split("/")[1], who, got, want))
    print("\n".join(f"{r[0]:6} {r[1]:8} {r[2]:12} -> {r[3]} (want {r[4]})" for r in rows))
    assert all(r[3] == r[4] for r in rows)
    admin.error("PUT", "/secrets/X1", 400, json={"value": "  ab  "})
    admin.error("PUT", "/secrets/1bad", 400, json={"value": VALUE})
    admin.error("PUT", "/secrets/OK", 404, params={"repo": "no-such-repo"},
                json={"value": VALUE})
    admin.ok("DELETE", f"/secrets/{name}", 204, params={"repo": repo["name"]})
    admin.error("DELETE", f"/secrets/{name}", 404, params={"repo": repo["name"]})


def test_a_claim_carries_its_repository_secrets_over_the_global_ones_and_no_others(
        server: Server, is_stub: bool) -> None:
    if not is_stub:
        pytest.skip("sets global secrets: only on the suite's own stub")
    mine, other = _repo(server, {"ok.yaml": WORKFLOW_OK}), _repo(server, {"ok.yaml": WORKFLOW_OK})
    admin = server.admin
    admin.ok("PUT", "/secrets/SHARED", json={"value": "global-value"})
    admin.ok("PUT", "/secrets/SHARED", params={"repo": mine}, json={"value": "repo-value"})
    admin.ok("PUT", "/secrets/ONLY_OTHER", params={"repo": other}, json={"value": "other-val"})
    claimed = server.leased_run(mine).claimed
    assert claimed["secrets"]["SHARED"] == "repo-value"
    assert "ONLY_OTHER" not in claimed["secrets"]
    assert server.leased_run(other).claimed["secrets"] == {"SHARED": "global-value",
                                                           "ONLY_OTHER": "other-val"}
    admin.ok("DELETE", "/secrets/SHARED", 204)


def test_params_declared_secret_are_stars_in_the_document_and_given_in_the_claim(
        server: Server) -> None:
    name = _repo(server, {"wf.yaml": SECRET_PARAMS})
    run = server.leased_run(name, "wf.yaml", params={"api_key": VALUE, "region": "eu"})
    assert run.created["params"] == {"api_key": "***", "region": "eu"}
    doc: dict[str, Any] = server.admin.ok("GET", f"/runs/{run.id}")
    assert doc["params"] == {"api_key": "***", "region": "eu"} and VALUE not in str(doc)
    assert run.claimed["secret_params"] == {"api_key": VALUE}
    assert run.claimed["run"]["params"]["api_key"] == "***"
    short = server.admin.call("POST", "/runs", json={"repo": name, "ref": "main",
                                                     "workflow_path": "wf.yaml",
                                                     "params": {"api_key": "ab"}})
    assert short.status_code == 422 and "api_key" in short.text


def test_values_are_encrypted_at_rest_under_a_0600_key(tmp_path: Path, is_stub: bool) -> None:
    if not is_stub:
        pytest.skip("reads the server's data dir")
    with StubProcess.start(tmp_path / "data", tmp_path / "repos") as stub:
        key = tmp_path / "data" / "secrets.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
        api = Api(stub.url, stub.admin_token)
        api.ok("PUT", "/secrets/AT_REST", json={"value": VALUE})
        stub.restart()                       # the same key is used again after a restart
        assert [s["name"] for s in api.ok("GET", "/secrets")["secrets"]] == ["AT_REST"]
        stored = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
        assert VALUE.encode() not in stored
        assert key.read_bytes() == (tmp_path / "data" / "secrets.key").read_bytes()
