"""A read started early on its own thread (the run document while the claim is confirmed)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from runner.errors import FerryError

log = logging.getLogger("ferry.daemon")


class Prefetch:
    """One attempt at a read on its own thread; `result()` is its value, None if it failed."""

    def __init__(self, fn: Callable[[], dict[str, Any]], *, name: str) -> None:
        self._fn = fn
        self._value: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except FerryError as exc:
            log.debug("early read failed, retrying later: %s", exc)

    def result(self) -> dict[str, Any] | None:
        """Wait for the read; its value or None when it failed."""
        self._thread.join()
        return self._value
