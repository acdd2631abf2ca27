"""A run job's requests to the control plane: retried, stoppable, and reported to `Contact`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from runner.api.client import ControlClient
from runner.api.retry import RetryPolicy, RetryStopped, call_with_retry
from runner.control.contact import Contact
from runner.document import TERMINAL_TASK
from runner.errors import TransientError

log = logging.getLogger("ferry.daemon")


class JobCalls:
    """Calls to the server for one job's preparation, each retried by `policy` until `stop`."""

    def __init__(self, client: ControlClient, policy: RetryPolicy, stop: threading.Event,
                 contact: Contact) -> None:
        self.client = client
        self._policy = policy
        self._stop = stop
        self._contact = contact

    def retry(self, fn: Callable[[], Any]) -> Any:
        """`fn()` retried while it fails transiently; `TransientError` once stopped."""
        try:
            result = call_with_retry(fn, self._policy, stop_event=self._stop,
                                     on_retry=self._on_retry)
        except RetryStopped as exc:
            raise TransientError("stopped while retrying") from exc
        self._contact.ok()
        return result

    def _on_retry(self, exc: BaseException, sleep: float) -> None:
        self._contact.failed(exc)
        log.debug("request failed, retrying in %.1fs: %s", sleep, exc)

    def on_sync_retry(self, exc: BaseException, sleep: float) -> None:
        """The journal's syncer failed to deliver (it retries on its own)."""
        self._contact.failed(exc)

    def on_ack(self, records: int) -> None:
        """The server acknowledged `records` of the journal."""
        self._contact.ok()
        self._contact.delivered(records)

    def log_offsets(self, run_id: str, doc: dict[str, Any],
                    only: str | None = None) -> dict[str, int]:
        """The server's log length of every task that may write more output (`only`: of that
        task): unfinished tasks that ran before (an earlier attempt's bytes stay; new output
        continues after them)."""
        offsets: dict[str, int] = {}
        for task_id, task in (doc.get("tasks") or {}).items():
            if only is not None and task_id != only:
                continue
            if task.get("master") or task.get("status") in TERMINAL_TASK:
                continue
            if task.get("started_at") or task.get("attempt") or task.get("interrupted"):
                offsets[task_id] = len(self._read_log(run_id, task_id))
        return offsets

    def _read_log(self, run_id: str, task_id: str) -> bytes:
        data: bytes = self.retry(lambda: self.client.read_log(run_id, task_id))
        return data
