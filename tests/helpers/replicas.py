"""Several `ferry-server` processes on one PostgreSQL database behind a round-robin proxy: what
the conformance suite and the benchmarks call "replicas". Looks like one `StubProcess`."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import secrets
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from server_stub.testing import StubProcess
from tests.helpers.faultproxy import _NOT_FORWARDED, _NOT_RETURNED, _end_to_end


class RoundRobinProxy:
    """Forwards each request on 127.0.0.1:<port> to the next upstream in turn."""

    def __init__(self, upstreams: list[tuple[str, int]]) -> None:
        self.upstreams = upstreams
        self._next = itertools.cycle(range(len(upstreams)))
        self._lock = threading.Lock()
        self.served: Counter[int] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _body(self) -> tuple[bytes | None, bool]:
                """The request body (a chunked one decoded: re-chunked upstream)."""
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    data = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return bytes(data), True
                        data += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return (self.rfile.read(length) if length else None), False

            def _handle(self) -> None:
                body, chunked = self._body()
                with proxy._lock:
                    index = next(proxy._next)
                    proxy.served[index] += 1
                conn = http.client.HTTPConnection(*proxy.upstreams[index], timeout=90)
                try:
                    headers = dict(_end_to_end(self.headers.items(), _NOT_FORWARDED))
                    # the server may answer (e.g. 413) before it read the whole body
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        conn.request(self.command, self.path,
                                     body=iter([body]) if chunked and body else body,
                                     headers=headers, encode_chunked=chunked and bool(body))
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status, resp.reason)
                    for key, value in _end_to_end(resp.getheaders(), _NOT_RETURNED):
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle
            do_TRACE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


class Replicas:
    """`count` servers sharing `database` (and the tokens and repositories), one URL."""

    def __init__(self, base: Path, database: str, *extra: str, count: int = 2) -> None:
        self.repos_dir = base / "repos"
        self.secrets_key = base / "secrets.key"  # one key for all: secrets open on each
        self.admin_token = "fa_" + secrets.token_urlsafe(24)
        self.registration_token = "fr_" + secrets.token_urlsafe(24)
        self.servers = [StubProcess(base / f"data{i}", self.repos_dir, "--database", database,
                                    "--secrets-key", str(self.secrets_key), *extra,
                                    admin_token=self.admin_token,
                                    registration_token=self.registration_token)
                        for i in range(count)]
        for server in self.servers:
            server.launch()
        self.proxy = RoundRobinProxy([("127.0.0.1", s.port) for s in self.servers])

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self.proxy.port}"

    @property
    def admin_headers(self) -> dict[str, str]:
        """Authorization header with the admin token."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def restart(self, *, kill: bool = False) -> Replicas:
        """Restart every server (same ports); returns self."""
        for server in self.servers:
            server.restart(kill=kill)
        return self

    def stop(self) -> None:
        """Stop the servers and the proxy."""
        for server in self.servers:
            server.stop()
        self.proxy.close()

    def __enter__(self) -> Replicas:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
