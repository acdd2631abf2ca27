"""Wakes long-polling claimers the moment a run becomes claimable (no sleep loop)."""

from __future__ import annotations

import asyncio


class Notifier:
    """A version counter under an asyncio.Condition: waiters remember the version they saw
    before looking at the queue, so a run queued in between is never missed."""

    def __init__(self) -> None:
        self.version = 0
        self._cond = asyncio.Condition()

    async def notify(self) -> None:
        """Something became claimable: wake every waiting claimer."""
        async with self._cond:
            self.version += 1
            self._cond.notify_all()

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
