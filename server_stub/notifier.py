"""Wakes long-polling claimers the moment a run becomes claimable (no sleep loop), on this
server and, through the database (`publish`, LISTEN/NOTIFY on PostgreSQL), on every other
server sharing it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi.concurrency import run_in_threadpool

log = logging.getLogger("ferry.server")


class Notifier:
    """A version counter under an asyncio.Condition: waiters remember the version they saw
    before looking at the queue, so a run queued in between is never missed."""

    def __init__(self, publish: Callable[[], None] | None = None, *,
                 coalesce: float = 0.0) -> None:
        self.version = 0
        self._cond = asyncio.Condition()
        self._publish = publish
        self._coalesce = coalesce
        """> 0: the other servers are told at most once per this many seconds (the last
        notification of a burst always goes out, late by at most that much)"""
        self._pending: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the waiters run on (for `wake_threadsafe`)."""
        self._loop = loop

    async def wake(self) -> None:
        """Wake every claimer waiting on this server."""
        async with self._cond:
            self.version += 1
            self._cond.notify_all()

    def wake_threadsafe(self) -> None:
        """`wake` from another thread (the database's listener)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(self.wake(), loop)

    async def notify(self) -> None:
        """Something became claimable: wake the claimers here and on every other server on the
        database (a failed NOTIFY is logged: other servers' claimers then find the run when
        their hold ends or another notification wakes them)."""
        await self.wake()
        if self._publish is None:
            return
        if self._coalesce > 0:
            if self._pending is None or self._pending.done():
                self._pending = asyncio.create_task(self._later())
            return
        await self._tell_others()

    async def _later(self) -> None:
        await asyncio.sleep(self._coalesce)
        await self._tell_others()

    async def _tell_others(self) -> None:
        assert self._publish is not None
        try:
            await run_in_threadpool(self._publish)
        except Exception as exc:
            log.error("could not notify the other servers: %s: %s", type(exc).__name__, exc)

    async def wait(self, seen: int, timeout: float) -> bool:
        """Wait until the version moves past `seen` or `timeout` passes; True if it moved."""
        if timeout <= 0:
            return self.version != seen
        async with self._cond:
            try:
                await asyncio.wait_for(self._cond.wait_for(lambda: self.version != seen),
                                       timeout)
            except TimeoutError:
                return False
        return True
