"""How one claimed run ended, as far as the runner is concerned."""

from __future__ import annotations

from enum import StrEnum

from runner.document import RunStatus, TaskStatus
from runner.exitcodes import ExitCode, for_status


class JobOutcome(StrEnum):
    """The outcome a `RunJob` returns to the daemon loop: the run's final status as delivered,
    or why there is none."""

    COMPLETED = RunStatus.COMPLETED.value
    FAILED = RunStatus.FAILED.value
    CANCELED = RunStatus.CANCELED.value
    AWAITING_TRIGGER = RunStatus.AWAITING_TRIGGER.value
    LEASE_LOST = "lease_lost"
    """The lease expired or was superseded: the run's work stopped, its journal is kept."""
    ERROR = "error"
    """The run could not be prepared or delivered (the log says why)."""
    UNDELIVERED = "undelivered"
    """The run ended but records wait in the journal (the daemon was told to stop)."""

    @property
    def exit_code(self) -> ExitCode:
        """What `ferry daemon --once` exits with after this outcome."""
        if self is JobOutcome.UNDELIVERED:
            return ExitCode.UNDELIVERED
        return for_status(self.value)

    @classmethod
    def of_status(cls, status: str) -> JobOutcome | None:
        """The outcome for a run status the executor ended with (None if not a final one)."""
        try:
            outcome = cls(status)
        except ValueError:
            return None
        return outcome if outcome.value in {s.value for s in RunStatus} else None


def task_outcome(status: TaskStatus, canceled: bool) -> str:
    """What a task job's finish says: the task's end (a task a cancel stopped: Canceled)."""
    if status == TaskStatus.COMPLETED:
        return RunStatus.COMPLETED.value
    return RunStatus.CANCELED.value if canceled else RunStatus.FAILED.value
