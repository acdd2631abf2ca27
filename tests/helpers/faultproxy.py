"""A small threaded HTTP proxy that fails a seeded share of requests: it answers 500 without
forwarding, or forwards and then drops the connection without answering (the server applied the
request but the client never hears of it: the case exactly-once delivery must survive).

Also, for the fault matrix and the endpoint tests:
    proxy.down = True        every request's connection is dropped unanswered, nothing forwarded
                             (the server is unreachable); False forwards again
    proxy.rate = 0.3         the share of failing requests can change while it runs
    proxy.hooks.append(fn)   fn(method, path, body) runs before a request is forwarded (on the
                             proxy's thread: it may block to hold the request, or flip `down`)
    proxy.answered.append(fn)  fn(method, path, body, status) runs once the server answered a
                             forwarded request (whether or not the client then hears of it)
    FaultProxy(..., prefix="/workflow-state")   serves the API under a path, as a reverse proxy
                             would: the prefix is stripped, anything else is a 404
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                         "upgrade", "proxy-authorization", "proxy-authenticate"})
# http.client sets Content-Length for the upstream request itself
_NOT_FORWARDED = _HOP_BY_HOP | {"content-length"}
# BaseHTTPRequestHandler sends its own Server and Date, and the proxy its own Content-Length
_NOT_RETURNED = _HOP_BY_HOP | {"content-length", "date", "server"}


def _end_to_end(headers: list[tuple[str, str]], drop: frozenset[str]) -> list[tuple[str, str]]:
    """`headers` without `drop` and without the ones the Connection header names."""
    named = {t.strip().lower() for k, v in headers if k.lower() == "connection"
             for t in v.split(",")}
    return [(k, v) for k, v in headers if k.lower() not in drop and k.lower() not in named]


class FaultProxy:
    """Forwards 127.0.0.1:<port> to `upstream` (host, port); `rate` of requests fail."""

    def __init__(self, upstream: tuple[str, int], *, rate: float = 0.3, seed: int = 1,
                 prefix: str = "") -> None:
        self.upstream = upstream
        self.rate = rate
        self.prefix = prefix.rstrip("/")
        self.down = False
        self.hooks: list[Callable[[str, str, bytes], None]] = []
        self.answered: list[Callable[[str, str, bytes, int], None]] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _drop(self) -> None:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path
                if proxy.prefix:
                    if not path.startswith(proxy.prefix + "/"):
                        self._answer(404, b'{"detail":"Not Found"}')
                        return
                    path = path[len(proxy.prefix):]
                for hook in list(proxy.hooks):
                    hook(self.command, path, body)
                if proxy.down:
                    with proxy._lock:
                        proxy.outcomes["down"] += 1
                    self._drop()
                    return
                fate = proxy._fate()
                if fate == "500":
                    self._answer(500, b'{"error":"injected","message":"fault proxy"}')
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = dict(_end_to_end(self.headers.items(), _NOT_FORWARDED))
                try:
                    conn.request(self.command, path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    payload = resp.read()
                except OSError:  # the server is gone (killed): the client sees a drop
                    self._drop()
                    return
                finally:
                    conn.close()
                for after in list(proxy.answered):
                    after(self.command, path, body, resp.status)
                if fate == "drop":
                    self._drop()
                    return
                self.send_response(resp.status)
                for k, v in _end_to_end(resp.getheaders(), _NOT_RETURNED):
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _fate(self) -> str:
        with self._lock:
            if self.rate <= 0:
                self.outcomes["ok"] += 1
                return "ok"
            r = self._rng.random()
            fate = "500" if r < self.rate / 2 else "drop" if r < self.rate else "ok"
            self.outcomes[fate] += 1
            return fate

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
