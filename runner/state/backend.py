"""The state backend protocol: where run documents, their diff history and task logs live.

Implementations: `runner.state.local.LocalBackend` (SQLite, the embedded default) and, for runs
reported to a control plane, a journal-first backend in `runner.state` that delivers through
`runner.api.client`. The executor talks to this protocol only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from runner.diff import Diff
from runner.errors import UnknownRun, UsageError

MIN_PREFIX = 4
"""The shortest run id prefix a command accepts for a run."""


def check_prefix(prefix: str) -> None:
    """UnknownRun for a prefix shorter than MIN_PREFIX (after no run had it as its id)."""
    if len(prefix) < MIN_PREFIX:
        raise UnknownRun(f"unknown run id '{prefix}' (a run id prefix needs at least "
                         f"{MIN_PREFIX} characters)")


def only_match(prefix: str, ids: list[str]) -> str:
    """The one run id a prefix matched (ids: at most two of its matches)."""
    if not ids:
        raise UnknownRun(f"unknown run id '{prefix}'")
    if len(ids) > 1:
        raise UsageError(f"run id prefix '{prefix}' is ambiguous; give more characters")
    return ids[0]


@dataclass(frozen=True)
class RunSummary:
    """One line of `ferry list`."""

    id: str
    name: str
    status: str
    created_at: str
    started_at: str | None
    ended_at: str | None


class StateBackend(Protocol):
    """Durable store of runs. Every method is atomic; all writes are diffs."""

    shared: bool
    """Whether other processes may execute the same runs at once (the `database` backend): the
    engine then starts a task only if it is still Pending, and leaves alone tasks that a live
    process runs (`announce`, `alive`)."""

    def announce(self, writer: str) -> None:
        """This process writes as `writer` until the backend closes."""
        ...

    def alive(self, writer: str) -> bool:
        """Whether a live process announced `writer` (False when the backend is not shared)."""
        ...

    def create_run(self, doc: dict[str, Any]) -> None:
        """Store a new run document (its creation is the first entry of its history)."""
        ...

    def resolve_run_id(self, ref: str) -> str:
        """The full id of the run whose id is `ref` or, for at least 4 characters, starts with
        it; `UnknownRun` when none does, `UsageError` when several do."""
        ...

    def load(self, run_id: str) -> dict[str, Any]:
        """The materialized document; `UnknownRun` if there is none."""
        ...

    def apply(self, diff: Diff) -> bool:
        """Apply a diff atomically. Idempotent: a (run, writer, seq) seen before returns False and
        changes nothing. A gap in the writer's seq raises `SeqGap`; a diff that does not apply
        raises `PatchConflict` and changes nothing."""
        ...

    def changes_since(self, run_id: str, cursor: int) -> tuple[list[Diff], int]:
        """Diffs applied after `cursor` (0 = from the start) and the new cursor: how a running
        process sees what other processes wrote (cancel, triggers)."""
        ...

    def position(self, run_id: str, writer: str) -> tuple[int, int]:
        """(cursor of the run's latest diff, last seq `writer` used there; 0 when none): where
        a writer resumes, without reading the run's history."""
        ...

    def history(self, run_id: str) -> list[Diff]:
        """Every diff of the run, in the order applied."""
        ...

    def list_runs(self, limit: int = 20, status: str | None = None) -> list[RunSummary]:
        """Most recent runs first."""
        ...

    def append_log(self, run_id: str, task_id: str, data: bytes) -> None:
        """Append raw output of a task."""
        ...

    def read_log(self, run_id: str, task_id: str, offset: int = 0) -> bytes:
        """A task's output from byte `offset` on."""
        ...

    def close(self) -> None:
        """Release connections and stop background work (nothing written is lost)."""
        ...
