"""`--health-addr`: /healthz, /readyz and /metrics over plain HTTP from a background thread.

The standard library's ThreadingHTTPServer is enough for a probe endpoint and adds no
dependency; it binds where it is told (port 0 picks a free port, reported by `port`).
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from runner.control.metrics import DaemonMetrics
from runner.errors import ConfigError


def parse_addr(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`) -> (host, port); `ConfigError` on anything else."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"--health-addr '{text}': expected HOST:PORT, e.g. 127.0.0.1:9750")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"--health-addr '{text}': port '{port_text}' is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"--health-addr '{text}': port {port} is out of range 0-65535")
    return host.strip("[]"), port


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        metrics = self.server.metrics
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            ok = metrics.healthy()
            body = "ok\n" if ok else f"main loop stalled for {metrics.loop_age():.0f}s\n"
            self._reply(200 if ok else 503, body, "text/plain; charset=utf-8")
        elif path == "/readyz":
            ready, why = metrics.ready()
            self._reply(200 if ready else 503, why + "\n", "text/plain; charset=utf-8")
        elif path == "/metrics":
            self._reply(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
        else:
            self._reply(404, "not found: try /healthz, /readyz or /metrics\n",
                        "text/plain; charset=utf-8")

    def _reply(self, status: int, body: str, content_type: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Probes hit this every few seconds: keep them out of the daemon's log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], metrics: DaemonMetrics) -> None:
        self.metrics = metrics
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, _Handler)


class HealthServer:
    """The probe endpoint; `start()` binds and serves on a daemon thread."""

    def __init__(self, host: str, port: int, metrics: DaemonMetrics) -> None:
        self._addr = (host, port)
        self._metrics = metrics
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and serve; returns the bound port. `ConfigError` when the address is unusable."""
        try:
            self._server = _Server(self._addr, self._metrics)
        except OSError as exc:
            host, port = self._addr
            raise ConfigError(f"--health-addr {host}:{port}: cannot listen: {exc.strerror}") \
                from None
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.5}, name="ferry-health",
                                        daemon=True)
        self._thread.start()
        return self.port

    @property
    def port(self) -> int:
        """The bound port (after `start`)."""
        assert self._server is not None
        return int(self._server.server_address[1])

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
