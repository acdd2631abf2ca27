"""What the executor tells its caller while a run goes on; the CLI and the daemon render them.

Every event is a frozen dataclass with `run_id`, `ts` (ISO 8601 UTC) and `kind`; `to_json()`
gives the `--json` form. The executor calls `EventSink.emit` from one thread at a time (it
serializes calls), so sinks need no locking of their own.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol


@dataclass(frozen=True)
class Event:
    """Base of every engine event."""

    kind: ClassVar[str] = "event"
    run_id: str
    ts: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with the event's `kind`."""
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class RunStarted(Event):
    """The executor starts (or resumes) a run."""

    kind: ClassVar[str] = "run_started"
    name: str = ""
    resumed: bool = False


@dataclass(frozen=True)
class TaskStatusChanged(Event):
    """A task changed status (masters included)."""

    kind: ClassVar[str] = "task_status"
    task_id: str = ""
    node_id: str = ""
    label: str = ""
    """`node` or `node, key: value` for a matrix child (`document.task_label`)."""
    status: str = ""
    previous: str | None = None
    error: str | None = None
    master: bool = False
    attempt: int = 0
    interrupted: bool = False
    """The task was Running when its runner stopped; it goes back to Pending and runs again."""
    canceled: bool = False
    """The task ended Failed because the run was canceled (the document says `canceled: true`)."""


@dataclass(frozen=True)
class MatrixChild:
    """One child in a `MatrixTasksCreated` event."""

    task_id: str
    label: str
    matrix: dict[str, Any]
    status: str


@dataclass(frozen=True)
class MatrixTasksCreated(Event):
    """A matrix node got its master and/or new children."""

    kind: ClassVar[str] = "matrix_created"
    node_id: str = ""
    master_id: str = ""
    children: list[MatrixChild] = field(default_factory=list)


@dataclass(frozen=True)
class StepStarted(Event):
    """A step of a task starts."""

    kind: ClassVar[str] = "step_started"
    task_id: str = ""
    label: str = ""
    index: int = 0
    name: str = ""


@dataclass(frozen=True)
class StepFinished(Event):
    """A step of a task ended (`result` is `StepResult.describe()`)."""

    kind: ClassVar[str] = "step_finished"
    task_id: str = ""
    label: str = ""
    index: int = 0
    name: str = ""
    ok: bool = True
    result: str = ""
    duration: float = 0.0


@dataclass(frozen=True)
class StepSkipped(Event):
    """A step's `if:` condition was false: the step did not run."""

    kind: ClassVar[str] = "step_skipped"
    task_id: str = ""
    label: str = ""
    index: int = 0
    name: str = ""
    condition: str = ""


@dataclass(frozen=True)
class OutputLine(Event):
    """One line a step printed (without its newline; invalid UTF-8 replaced)."""

    kind: ClassVar[str] = "output"
    task_id: str = ""
    label: str = ""
    line: str = ""


@dataclass(frozen=True)
class TaskRetrying(Event):
    """A failed task will run again after `backoff` seconds."""

    kind: ClassVar[str] = "task_retrying"
    task_id: str = ""
    label: str = ""
    attempt: int = 0
    attempts: int = 0
    error: str = ""
    backoff: float = 0.0


@dataclass(frozen=True)
class TaskTriggered(Event):
    """A user triggered a task that was AwaitingTrigger."""

    kind: ClassVar[str] = "task_triggered"
    task_id: str = ""
    label: str = ""


@dataclass(frozen=True)
class RunPaused(Event):
    """Nothing more can run without a trigger; `awaiting` lists (task id, label)."""

    kind: ClassVar[str] = "run_paused"
    awaiting: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class RunFinished(Event):
    """The run ended Completed, Failed or Canceled."""

    kind: ClassVar[str] = "run_finished"
    status: str = ""
    error: str | None = None


class EventSink(Protocol):
    """Receives engine events."""

    def emit(self, event: Event) -> None:
        """Handle one event; must not raise."""
        ...


class NullSink:
    """Drops every event."""

    def emit(self, event: Event) -> None:
        """Ignore the event."""


class CollectingSink:
    """Keeps every event in memory (tests, and callers that render at the end)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        """Remember the event."""
        with self._lock:
            self.events.append(event)

    def of(self, kind: type[Event]) -> list[Event]:
        """The events of one class, in order."""
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]
