"""The daemon's log lines for a run's engine events: one line per task or run status change
(step output stays in the task logs)."""

from __future__ import annotations

import logging

from runner.control.logs import fields
from runner.engine.events import Event, RunFinished, RunPaused, TaskStatusChanged

log = logging.getLogger("ferry.daemon")


class LogEvents:
    """An engine event sink that writes one daemon log line per status change."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def emit(self, event: Event) -> None:
        """Log task and run status changes; step output stays in the task logs."""
        if isinstance(event, TaskStatusChanged) and not event.master:
            # a task a cancel stopped is stored Failed (for the scheduler) but was not a failure
            status = "canceled" if event.canceled else event.status.lower()
            log.info("task %s", status, extra=fields(
                run=self.run_id, task=event.task_id, node=event.label, error=event.error))
        elif isinstance(event, RunPaused):
            log.info("run awaiting trigger", extra=fields(
                run=self.run_id, awaiting=",".join(label for _, label in event.awaiting)))
        elif isinstance(event, RunFinished):
            log.info("run %s", event.status.lower(), extra=fields(run=self.run_id,
                                                                   error=event.error))
