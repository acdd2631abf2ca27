"""Connection limits: a request head must arrive within --header-timeout, an idle keep-alive
connection is closed after --keepalive-timeout, and past --max-connections new requests get a
quick 503 instead of waiting; normal clients are served while slow ones are being shed."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from server_stub.testing import StubProcess
from tests.helpers import wait_until

HEADER_TIMEOUT = 2.0
KEEPALIVE = 2.0


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[StubProcess]:
    """A stub with short connection timeouts."""
    with StubProcess.start(tmp_path / "data", tmp_path / "repos", "--header-timeout",
                           str(HEADER_TIMEOUT), "--keepalive-timeout", str(KEEPALIVE)) as stub:
        yield stub


def _connect(stub: StubProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", stub.port), timeout=10)


def _closed_by_peer(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(4096) == b""
    except OSError:  # reset: closed too
        return True


def _server_connections(stub: StubProcess) -> int:
    return sum(1 for c in psutil.Process(stub.proc.pid).net_connections("tcp")
               if c.laddr and c.laddr.port == stub.port and c.status == psutil.CONN_ESTABLISHED)


def test_silent_and_trickling_connections_are_closed_and_others_served(
        stub: StubProcess) -> None:
    silent = [_connect(stub) for _ in range(50)]
    trickling = [_connect(stub) for _ in range(200)]
    for sock in trickling:
        sock.sendall(b"GET /api/v1/runs HTTP/1.1\r\nHost: x\r\n")
    opened = time.monotonic()
    closed_at: dict[int, float] = {}
    stop = threading.Event()

    def trickle() -> None:  # one more header line on every open connection, twice a second
        n = 0
        while not stop.is_set() and len(closed_at) < len(trickling):
            n += 1
            for i, sock in enumerate(trickling):
                if i in closed_at:
                    continue
                try:
                    if _closed_by_peer(sock):
                        closed_at[i] = time.monotonic() - opened
                        continue
                    sock.sendall(f"X-Slow-{n}: {'y' * 10}\r\n".encode())
                except OSError:
                    closed_at[i] = time.monotonic() - opened
            stop.wait(0.5)

    thread = threading.Thread(target=trickle)
    thread.start()
    served = []
    try:
        # normal clients meanwhile, each on a new connection
        while time.monotonic() - opened < HEADER_TIMEOUT * 1.5:
            resp = requests.get(stub.url + "/api/v1/runs", headers=stub.admin_headers,
                                timeout=10)
            served.append(resp.status_code)
        wait_until(lambda: all(_closed_by_peer(s) for s in silent), HEADER_TIMEOUT * 3 + 10,
                   message="the silent connections to be closed")
        silent_done = time.monotonic() - opened
        wait_until(lambda: len(closed_at) == len(trickling), HEADER_TIMEOUT * 3 + 10,
                   message="the trickling connections to be closed")
    finally:
        stop.set()
        thread.join(30)
        for sock in silent + trickling:
            sock.close()
    print(f"\n{len(served)} normal requests served meanwhile; 50 silent closed by "
          f"{silent_done:.1f}s, 200 trickling by {max(closed_at.values()):.1f}s "
          f"(header timeout {HEADER_TIMEOUT}s)")
    assert served and set(served) == {200}, served
    wait_until(lambda: _server_connections(stub) == 0, 10, message="no connection left")


def test_an_idle_keep_alive_connection_is_closed(stub: StubProcess) -> None:
    sock = _connect(stub)
    try:
        sock.sendall(f"GET /api/v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     f"{stub.admin_token}\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        wait_until(lambda: _closed_by_peer(sock), KEEPALIVE * 3 + 10,
                   message="the idle keep-alive connection to be closed")
    finally:
        sock.close()


def test_a_keep_alive_connection_that_starts_a_head_and_stalls_is_closed(
        stub: StubProcess) -> None:
    sock = _connect(stub)
    try:
        head = (f"GET /api/v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                f"{stub.admin_token}\r\n").encode()
        sock.sendall(head + b"\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /api/v1/runs HTTP/1.1\r\n")  # stops the keep-alive timer

        def shed() -> bool:
            try:
                sock.sendall(b"X-Slow: y\r\n")
            except OSError:
                return True
            return _closed_by_peer(sock)

        wait_until(shed, HEADER_TIMEOUT * 3 + 10, interval=0.3,
                   message="the stalled second head to be cut off")
    finally:
        sock.close()


def test_past_the_connection_cap_new_requests_get_503_until_the_slow_ones_go(
        tmp_path: Path) -> None:
    with StubProcess.start(tmp_path / "data", tmp_path / "repos", "--header-timeout",
                           str(HEADER_TIMEOUT), "--max-connections", "20") as stub:
        silent = [_connect(stub) for _ in range(25)]
        try:
            wait_until(lambda: _server_connections(stub) >= 20, 10,
                       message="the server to accept the silent connections")
            resp = requests.get(stub.url + "/api/v1/runs", headers=stub.admin_headers,
                                timeout=10)
            assert resp.status_code == 503, resp.text
            wait_until(lambda: requests.get(stub.url + "/api/v1/runs",
                                            headers=stub.admin_headers,
                                            timeout=10).status_code == 200,
                       HEADER_TIMEOUT * 3 + 10, message="service after the silent ones left")
        finally:
            for sock in silent:
                sock.close()
