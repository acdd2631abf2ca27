"""The fault proxy forwards an answer with each header once (no second Date, Server or
Content-Length next to its own), and the stub helper comes back on the same port after a kill."""

from __future__ import annotations

import http.client
from collections import Counter

from tests.helpers.faultproxy import FaultProxy
from tests.integration.sync.conftest import ADMIN, StubServer


def _get(port: int, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {ADMIN}"})
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def test_proxied_answer_has_each_header_once(stub: StubServer) -> None:
    stub.start()
    _, direct_headers, direct = _get(stub.port, "/api/v1/runs")
    with FaultProxy(("127.0.0.1", stub.port), rate=0.0) as proxy:
        status, headers, body = _get(proxy.port, "/api/v1/runs")
    assert status == 200 and body == direct
    names = Counter(k.lower() for k, _ in headers)
    assert {n for n, count in names.items() if count > 1} == set(), headers
    assert names["date"] == names["server"] == names["content-length"] == 1
    assert dict((k.lower(), v) for k, v in headers)["content-length"] == str(len(body))
    upstream_type = dict((k.lower(), v) for k, v in direct_headers)["content-type"]
    assert dict((k.lower(), v) for k, v in headers)["content-type"] == upstream_type


def test_stub_restarts_on_its_port_after_sigkill(stub: StubServer) -> None:
    stub.start()
    url, first = stub.url, stub.process.proc.pid
    stub.kill()
    assert stub.process.proc.returncode == -9
    stub.start()
    assert stub.url == url and stub.process.proc.pid != first
    assert stub.admin_get("/runs").json()["runs"] == []
