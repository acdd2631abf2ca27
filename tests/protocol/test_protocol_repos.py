"""Repositories: files at a commit, the tree as tar.gz, traversal and unknown names refused."""

from __future__ import annotations

import http.client
import io
import tarfile
from urllib.parse import urlparse

import pytest

from tests.protocol.api import WORKFLOW_OK, Server


def test_blob_at_commit_tag_and_branch(server: Server, repo: dict[str, str]) -> None:
    admin = server.admin
    for ref in (repo["sha"], repo["tag"], "main"):
        resp = admin.call("GET", f"/repos/{repo['name']}/blob/{ref}/ok.yaml")
        assert resp.status_code == 200 and resp.text == WORKFLOW_OK
    data = admin.call("GET", f"/repos/{repo['name']}/blob/{repo['sha']}/dir/data.bin")
    assert data.content == bytes(range(256))
    # A runner may read repositories too.
    runner = server.register()
    assert runner.api.call("GET", f"/repos/{repo['name']}/blob/main/README").text == \
        "conformance\n"


def test_blob_unknowns_are_404(server: Server, repo: dict[str, str]) -> None:
    admin = server.admin
    admin.error("GET", f"/repos/{repo['name']}/blob/{repo['sha']}/missing.yaml", 404)
    admin.error("GET", f"/repos/{repo['name']}/blob/{repo['old']}/manual.yaml", 404)
    admin.error("GET", f"/repos/{repo['name']}/blob/{repo['sha']}/dir", 404)  # a tree
    admin.error("GET", f"/repos/{repo['name']}/blob/{'0' * 40}/ok.yaml", 404)
    admin.error("GET", "/repos/no-such-repo/blob/main/ok.yaml", 404)


@pytest.mark.parametrize("path", [
    "/repos/{repo}/blob/main/../../../etc/passwd",
    "/repos/{repo}/blob/main/%2e%2e/%2e%2e/etc/passwd",
    "/repos/{repo}/blob/main//etc/passwd",
    "/repos/{repo}/blob/main/dir/./data.bin",
    "/repos/../blob/main/ok.yaml",
    "/repos/..%2f..%2fetc/blob/main/passwd",
    "/repos/%2e%2e/archive/main",
    "/repos/{repo}/blob/-c/ok.yaml",
    "/repos/{repo}/archive/--output=x",
])
def test_traversal_is_refused(server: Server, repo: dict[str, str], path: str) -> None:
    # Raw request: clients normalise '..' away, an attacker does not.
    url = urlparse(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
    conn.request("GET", "/api/v1" + path.format(repo=repo["name"]),
                 headers={"Authorization": f"Bearer {server.admin_token}"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status in (400, 404, 422), (path, resp.status, body)
    assert b'"error"' in body and b"root:" not in body


def test_archive_is_the_tree(server: Server, repo: dict[str, str]) -> None:
    resp = server.admin.call("GET", f"/repos/{repo['name']}/archive/{repo['sha']}")
    assert resp.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(resp.content), mode="r:gz") as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
        assert names == {"ok.yaml", "manual.yaml", "bad.yaml", "dir/data.bin", "README",
                         "distributed.yaml"}
        member = tar.extractfile("dir/data.bin")
        assert member is not None and member.read() == bytes(range(256))
    old = server.admin.call("GET", f"/repos/{repo['name']}/archive/{repo['old']}")
    with tarfile.open(fileobj=io.BytesIO(old.content), mode="r:gz") as tar:
        assert {m.name for m in tar.getmembers() if m.isfile()} == {"ok.yaml"}
    server.admin.error("GET", f"/repos/{repo['name']}/archive/nope", 404)
