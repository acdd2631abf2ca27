"""Keeping a server's data for a year: log retention for finished runs and online backups.

Retention removes `logs/<run>/` of runs that ended (Completed, Failed, Canceled, handed back)
longer ago than the given age; their run records and diff history stay, so `ferry status --server`
still shows them and `ferry logs --server` prints nothing. Nothing writes to a finished run's
logs (its lease is released), so removing them needs no lock. Backups copy the SQLite database
with SQLite's online backup API: a consistent snapshot while the server keeps writing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DB_NAME = "server.db"
FINISHED = ("Completed", "Failed", "Canceled")

_FINISHED_SQL = (
    "SELECT id, COALESCE(json_extract(doc, '$.ended_at'), created_at) AS ended FROM runs"
    " WHERE status IN (?, ?, ?) AND queue IN ('done', 'external') ORDER BY seq")


@dataclass
class LogPruneReport:
    """Runs whose logs were (or, in a dry run, would be) removed, and what failed."""

    dry_run: bool
    removed: list[tuple[str, str, int]] = field(default_factory=list)
    """(run id, when it ended, bytes)"""
    errors: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        """Bytes freed (or that would be)."""
        return sum(size for _, _, size in self.removed)


def _epoch(ts: str) -> float | None:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except (TypeError, ValueError):
        return None


def _size(path: Path) -> int:
    total = 0
    for entry in path.rglob("*"):
        with contextlib.suppress(OSError):
            total += entry.lstat().st_size
    return total


def open_readonly(data_dir: Path) -> sqlite3.Connection:
    """The server database, read-only (a running server may hold it too: WAL allows that);
    FileNotFoundError when the data dir has none."""
    path = data_dir / DB_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no server database at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
    conn.row_factory = sqlite3.Row
    return conn


def expired_logs(conn: Any, logs_dir: Path, *, older_than: float,
                 now: float) -> list[tuple[str, str, int]]:
    """(run id, when it ended, bytes) of every finished run with logs that ended more than
    `older_than` seconds before `now`; `conn` (the store's or a read-only sqlite3 connection)
    only reads the runs table."""
    found: list[tuple[str, str, int]] = []
    for row in conn.execute(_FINISHED_SQL, FINISHED).fetchall():
        ended = _epoch(row["ended"])
        target = logs_dir / row["id"]
        if ended is not None and now - ended >= older_than and target.is_dir():
            found.append((row["id"], str(row["ended"]), _size(target)))
    return found


def remove_logs(logs_dir: Path, run_id: str) -> list[str]:
    """Remove `logs/<run>/`; what could not be removed, one message per file."""
    errors: list[str] = []

    def failed(function: object, name: str, info: object) -> None:
        exc = info[1] if isinstance(info, tuple) else info
        errors.append(f"run {run_id}: cannot remove {name}: "
                      f"{getattr(exc, 'strerror', None) or exc}")

    shutil.rmtree(logs_dir / run_id, onerror=failed)
    return errors


def prune_logs(conn: sqlite3.Connection, logs_dir: Path, *, older_than: float, now: float,
               dry_run: bool = False) -> LogPruneReport:
    """Remove (or with `dry_run` only list) the logs of runs that ended more than `older_than`
    seconds before `now`."""
    report = LogPruneReport(dry_run=dry_run)
    report.removed = expired_logs(conn, logs_dir, older_than=older_than, now=now)
    if not dry_run:
        for run_id, _, _ in report.removed:
            report.errors += remove_logs(logs_dir, run_id)
    return report


def backup_database(data_dir: Path, output: Path) -> int:
    """Copy the server database to `output` (mode 0600) with SQLite's online backup, check the
    copy, and put it in place atomically; returns the number of runs it holds."""
    source = open_readonly(data_dir)
    tmp = output.with_name(f".{output.name}.partial")
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        target = sqlite3.connect(str(tmp))
        try:
            source.backup(target)
            check = target.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"the copy fails its integrity check: {check}")
            runs = int(target.execute("SELECT count(*) FROM runs").fetchone()[0])
            # a copy that opens without its -wal file: the snapshot is all in the main file
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    return runs


def utc_text(epoch: float) -> str:
    """`2026-01-02T03:04:05Z`."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
