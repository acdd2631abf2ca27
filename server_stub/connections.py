"""Connection limits around uvicorn's h11 protocol: a request head must arrive in time.

uvicorn closes a keep-alive connection left idle after a response (`timeout_keep_alive`) and
answers 503 past `limit_concurrency` connections, but it waits forever for the head of a request:
a client that connects and says nothing, or trickles header lines, holds a connection (and a file
descriptor) until the process runs out of them. `guarded_h11` closes a connection whose request
line and headers are not complete `header_timeout` seconds after the connection opened or after
the first byte of its next request arrived.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request's head."""
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Bytes of a new request start its head's clock; a complete head stops it."""
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            if self._head_timer is None:
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        """No deadline for a closed connection."""
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def guarded_h11(header_timeout: float) -> type[H11Protocol]:
    """The protocol class to give uvicorn (`Config(http=...)`) for this header timeout."""
    return type("GuardedH11", (GuardedH11,), {"header_timeout": header_timeout})


def raise_fd_limit(connections: int) -> int:
    """Raise the soft open-files limit toward the hard one so that `connections` sockets plus
    the database and log files fit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft
