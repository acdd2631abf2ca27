"""sd_notify over a real unix datagram socket, and the watchdog ticker's health gate."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.control.notify import Notifier, WatchdogTicker, watchdog_interval
from tests.helpers import wait_until


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A bound datagram socket standing in for systemd's notify socket."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield str(path), sock
    sock.close()


def test_messages_arrive_as_datagrams(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = Notifier(path)
    assert notifier.ready("claiming runs")
    assert sock.recv(4096) == b"READY=1\nSTATUS=claiming runs"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.status("2 runs\nrunning")
    assert sock.recv(4096) == b"STATUS=2 runs running"
    assert notifier.stopping("draining")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=draining"
    notifier.close()


def test_abstract_socket_names_are_supported() -> None:
    name = f"ferry-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert Notifier("@" + name).ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_no_socket_is_a_no_op() -> None:
    notifier = Notifier(None)
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.stopping() is False


def test_missing_socket_does_not_raise(tmp_path: Path) -> None:
    assert Notifier(str(tmp_path / "gone.sock")).ready() is False


def test_watchdog_interval_parsing() -> None:
    assert watchdog_interval("30000000") == 30.0
    assert watchdog_interval(None) is None
    assert watchdog_interval("abc") is None
    assert watchdog_interval("0") is None


def test_ticker_pings_only_while_healthy(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    healthy = {"value": True}
    ticker = WatchdogTicker(Notifier(path), period=0.2, healthy=lambda: healthy["value"])
    ticker.start()
    try:
        assert sock.recv(4096) == b"WATCHDOG=1"
        healthy["value"] = False
        skipped_before = ticker.skipped
        wait_until(lambda: ticker.skipped > skipped_before + 1, message="ticks while unhealthy")
        # Drain what was sent before the switch; then no ping may arrive while unhealthy.
        sock.setblocking(False)
        while True:
            try:
                sock.recv(4096)
            except BlockingIOError:
                break
        sent = ticker.sent
        wait_until(lambda: ticker.skipped > skipped_before + 3, message="more unhealthy ticks")
        assert ticker.sent == sent
        with pytest.raises(BlockingIOError):
            sock.recv(4096)
    finally:
        ticker.stop()
    assert os.path.exists(path)
