"""The store interface: a transaction's connection (`Conn`), the database (`Database`), and the
few SQL pieces that differ between SQLite and PostgreSQL (`Dialect`).

Every statement is written once with `?` placeholders; rows are plain dicts. Inside a write
transaction `lock` after a SELECT takes the row lock (PostgreSQL: `FOR UPDATE`; SQLite: nothing,
its `BEGIN IMMEDIATE` already serializes writers), and `claim_lock` lets concurrent claimers pass
each other (`FOR UPDATE SKIP LOCKED`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

Row = dict[str, Any]

QUEUE = "ferry_queue"
"""Channel: something became claimable (claimers long-poll for it)."""
CHANGES = "ferry_changes"
"""Channel: a run or a runner changed (the dashboard's live pages)."""


@dataclass(frozen=True)
class Dialect:
    """What differs in the SQL of the two databases."""

    name: str
    lock: str
    """appended to a SELECT that reads a row the transaction will change"""
    claim_lock: str
    """appended to the SELECT that picks a row to claim"""
    labels_fit: str
    """a condition: the JSON array in column `labels` is a subset of the JSON array parameter"""


SQLITE = Dialect(
    name="sqlite", lock="", claim_lock="",
    labels_fit="NOT EXISTS (SELECT 1 FROM json_each(labels) AS l"
               " WHERE l.value NOT IN (SELECT value FROM json_each(?)))")
POSTGRESQL = Dialect(
    name="postgresql", lock=" FOR UPDATE", claim_lock=" FOR UPDATE SKIP LOCKED",
    labels_fit="labels::jsonb <@ ?::jsonb")


class Cursor(Protocol):
    """What a statement returns."""

    @property
    def rowcount(self) -> int:
        """Rows changed by an INSERT/UPDATE/DELETE."""

    def fetchone(self) -> Any:
        """The next row (a dict) or None."""

    def fetchall(self) -> list[Any]:
        """Every remaining row."""

    def __iter__(self) -> Iterator[Any]:
        """The rows one by one."""


class Conn(Protocol):
    """One transaction's connection."""

    dialect: Dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement written with `?` placeholders."""


class Database(Protocol):
    """A database the server keeps its state in."""

    dialect: Dialect
    url: str
    """where it is, without credentials (for logs and errors)"""

    def transaction(self) -> AbstractContextManager[Conn]:
        """One transaction: committed when the block ends, rolled back on any exception."""

    def listen(self, wakes: Mapping[str, Callable[[], None]]) -> None:
        """Call `wakes[channel]` (from another thread) whenever any server on this database
        `publish`es on that channel; a no-op for a database only one process uses."""

    def publish(self, channel: str) -> None:
        """Tell every server on this database (this one too) about `channel`."""

    def close(self) -> None:
        """Release connections and threads."""
