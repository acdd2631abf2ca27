"""systemd's sd_notify protocol over `$NOTIFY_SOCKET`, and the watchdog ticker.

The CLI reads `NOTIFY_SOCKET` / `WATCHDOG_USEC` and passes them in; with no socket every call
is a no-op, so the daemon behaves the same under systemd and in a terminal.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

log = logging.getLogger("ferry.daemon")


class Notifier:
    """Sends sd_notify datagrams (READY=1, WATCHDOG=1, STATUS=..., STOPPING=1) to one socket."""

    def __init__(self, socket_path: str | None) -> None:
        self._address: str | None = None
        if socket_path:
            # An abstract socket is written "@name"; the kernel wants a leading NUL byte.
            self._address = "\0" + socket_path[1:] if socket_path.startswith("@") else socket_path
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when a notify socket was given."""
        return self._address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=VALUE` lines as one datagram; False (never an exception) if it failed."""
        if self._address is None:
            return False
        payload = "\n".join(fields).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX,
                                               socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(payload, self._address)
                return True
            except OSError as exc:
                # systemd may be restarting; the service must not die because of it.
                log.debug("sd_notify failed: %s", exc)
                return False

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (with an optional STATUS=)."""
        return self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        """STATUS=<one line> shown by `systemctl status`."""
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """WATCHDOG=1: the service is alive."""
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        """RELOADING=1: the configuration is being reloaded (READY=1 follows)."""
        return self.send("RELOADING=1")

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: the service is shutting down (draining)."""
        return self.send("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def close(self) -> None:
        """Close the datagram socket."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def watchdog_interval(watchdog_usec: str | None) -> float | None:
    """Seconds of `WatchdogSec` from systemd's `WATCHDOG_USEC` value; None when unset/invalid."""
    if not watchdog_usec:
        return None
    try:
        usec = int(watchdog_usec)
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


class WatchdogTicker:
    """Sends WATCHDOG=1 every `period/2` seconds, but only while `healthy()` says the daemon's
    loop is ticking: a wedged loop stops the pings and systemd restarts the service."""

    def __init__(self, notifier: Notifier, period: float, healthy: Callable[[], bool]) -> None:
        self._notifier = notifier
        self._interval = period / 2
        self._healthy = healthy
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ferry-watchdog", daemon=True)
        self.sent = 0
        self.skipped = 0

    def start(self) -> None:
        """Start ticking on a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def tick(self) -> bool:
        """One tick: ping if healthy; returns whether a ping was sent."""
        if self._healthy():
            if self._notifier.watchdog():
                self.sent += 1
                return True
            return False
        self.skipped += 1
        log.warning("watchdog: main loop not ticking, withholding WATCHDOG=1")
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self._interval)
