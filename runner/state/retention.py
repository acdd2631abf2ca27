"""Retention on a runner machine: remove what finished runs leave behind (`ferry prune`, and the
daemon's `runner.retention` setting).

Per run, under the data dir: `work/<run>/`, `logs/<run>/`, `locks/<run>.lock` and a delivered
`journal/<run>.jsonl`. The run records in `ferry.db` stay (`ferry status` and `list` still show
the runs; `ferry logs` has nothing left to print).

A run is never touched while a process executes it (its `flock` is held: `ferry run`/`resume`
and the daemon's jobs hold it), while its journal holds records the control plane has not
acknowledged (or that a lost lease stranded: kept for a human), or when the local database says
it is not finished (it may still be resumed). A run the database does not know (a daemon's run)
counts as finished at its last activity: the newest change among its files. While its files are
removed the run's lock is held, so nothing starts executing it meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from runner.document import TERMINAL_RUN
from runner.errors import StateError
from runner.paths import Paths, safe_segment
from runner.state.backend import RunSummary
from runner.state.journal import LOCK_SUFFIX, SUFFIX, Journal
from runner.state.runlock import RunLock

KEPT_EXECUTING = "executing"
KEPT_UNDELIVERED = "undelivered journal"
KEPT_UNFINISHED = "not finished"
KEPT_RECENT = "too recent"
KEPT_NEWEST = "among the newest kept"
KEPT_ERROR = "unreadable journal"


@dataclass(frozen=True)
class RetentionPolicy:
    """What to remove: finished runs older than `older_than` seconds (None: any age), except
    the `keep` most recently finished."""

    older_than: float | None = 30 * 86400.0
    keep: int = 0


@dataclass
class RemovedRun:
    """One run whose files were (or, in a dry run, would be) removed."""

    run_id: str
    finished: float
    paths: list[Path]
    bytes: int


@dataclass
class PruneReport:
    """What a prune removed, what it kept and why, and what it could not remove."""

    dry_run: bool
    removed: list[RemovedRun] = field(default_factory=list)
    kept: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        """Bytes freed (or that would be)."""
        return sum(r.bytes for r in self.removed)

    def keep(self, reason: str, run_id: str) -> None:
        """Record a run left alone."""
        self.kept.setdefault(reason, []).append(run_id)


@dataclass
class _Run:
    run_id: str
    paths: list[Path]
    finished: float | None = None


def local_runs(paths: Paths) -> dict[str, RunSummary]:
    """Every run of the local state database (empty when there is no database: a daemon's
    machine); opening it never creates it."""
    if not paths.db_path.exists():
        return {}
    from runner.state.local import LocalBackend

    backend = LocalBackend(paths.db_path, paths.logs_dir)
    try:
        return {r.id: r for r in backend.list_runs(limit=2**62)}
    finally:
        backend.close()


def _epoch(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _children(directory: Path, suffix: str = "") -> Iterable[tuple[str, Path]]:
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if suffix and not entry.name.endswith(suffix):
            continue
        run_id = entry.name[: -len(suffix)] if suffix else entry.name
        with contextlib.suppress(ValueError):
            yield safe_segment(run_id, "run id"), entry


def _collect(paths: Paths) -> dict[str, _Run]:
    runs: dict[str, _Run] = {}
    sources = [(paths.work_dir, ""), (paths.logs_dir, ""), (paths.data_dir / "locks", ".lock"),
               (paths.journal_dir, SUFFIX)]
    for directory, suffix in sources:
        for run_id, path in _children(directory, suffix):
            runs.setdefault(run_id, _Run(run_id, [])).paths.append(path)
    return runs


def _last_activity(run: _Run) -> float:
    """The newest change among a run's files: their own times and, one and two levels down,
    those of the task logs and task control dirs (not a walk of the whole workspace)."""
    newest = 0.0
    for path in run.paths:
        with contextlib.suppress(OSError):
            newest = max(newest, path.lstat().st_mtime)
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                for child in path.iterdir():
                    newest = max(newest, child.lstat().st_mtime)
                    if child.is_dir() and not child.is_symlink():
                        for grandchild in child.iterdir():
                            newest = max(newest, grandchild.lstat().st_mtime)
    return newest


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(OSError):
            return path.lstat().st_size
        return 0
    total = 0
    for root, dirs, files in os.walk(path, onerror=lambda exc: None):
        for name in [*files, *dirs]:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _journal_state(path: Path) -> str | None:
    """None when the journal holds nothing to deliver; else why it must stay."""
    try:
        journal = Journal(path, readonly=True)  # a look only: its owner may be writing it
    except StateError as exc:
        return f"{KEPT_ERROR}: {exc}"
    if journal.lost is not None or journal.backlog() or journal.gap is not None:
        return KEPT_UNDELIVERED
    return None


def prune(paths: Paths, policy: RetentionPolicy, *, now: float, dry_run: bool = False,
          known: Mapping[str, RunSummary] | None = None,
          active: frozenset[str] = frozenset()) -> PruneReport:
    """Remove (or with `dry_run` only list) the files of finished runs the policy lets go.
    `known` is the local database's runs (`local_runs`), `active` runs the caller executes
    itself (the daemon's jobs; they are also locked, this only saves a probe)."""
    known = known if known is not None else {}
    report = PruneReport(dry_run=dry_run)
    locks_dir = paths.data_dir / "locks"
    candidates: list[_Run] = []
    for run_id, run in sorted(_collect(paths).items()):
        summary = known.get(run_id)
        lock = RunLock(locks_dir, run_id)
        if run_id in active or (lock.path.exists() and lock.is_locked()):
            report.keep(KEPT_EXECUTING, run_id)
            continue
        if summary is not None and summary.status not in TERMINAL_RUN:
            report.keep(KEPT_UNFINISHED, run_id)
            continue
        journal = next((p for p in run.paths if p.name.endswith(SUFFIX)), None)
        why = _journal_state(journal) if journal is not None else None
        if why is not None:
            report.keep(why if why == KEPT_UNDELIVERED else KEPT_ERROR, run_id)
            if why != KEPT_UNDELIVERED:
                report.errors.append(why.split(": ", 1)[1])
            continue
        finished = _epoch(summary.ended_at or summary.created_at) if summary else None
        run.finished = finished if finished is not None else _last_activity(run)
        candidates.append(run)
    candidates.sort(key=lambda r: (r.finished or 0.0, r.run_id), reverse=True)
    for index, run in enumerate(candidates):
        if index < policy.keep:
            report.keep(KEPT_NEWEST, run.run_id)
        elif policy.older_than is not None and now - (run.finished or 0.0) < policy.older_than:
            report.keep(KEPT_RECENT, run.run_id)
        else:
            _remove(run, locks_dir, report, dry_run)
    return report


def _remove(run: _Run, locks_dir: Path, report: PruneReport, dry_run: bool) -> None:
    if dry_run:  # look, touch nothing (not even a lock file)
        size = sum(_size(p) for p in run.paths)
        report.removed.append(RemovedRun(run.run_id, run.finished or 0.0, list(run.paths), size))
        return
    lock = RunLock(locks_dir, run.run_id)
    if not lock.acquire():  # it started executing since we looked
        report.keep(KEPT_EXECUTING, run.run_id)
        return
    # taking the lock may have made its file: it goes too (last: held until the rest is gone)
    doomed = [*(p for p in run.paths if p != lock.path), lock.path]
    owner = next((p.with_name(run.run_id + LOCK_SUFFIX) for p in run.paths
                  if p.name.endswith(SUFFIX)), None)  # a journal's owner lock goes with it
    if owner is not None and owner.exists():
        doomed.insert(0, owner)
    try:
        journal = next((p for p in run.paths if p.name.endswith(SUFFIX)), None)
        if journal is not None and journal.exists() and _journal_state(journal) is not None:
            report.keep(KEPT_UNDELIVERED, run.run_id)
            return
        size = sum(_size(p) for p in run.paths)
        report.removed.append(RemovedRun(run.run_id, run.finished or 0.0, list(run.paths), size))
        for path in doomed:
            _delete(path, report)
    finally:
        lock.release()


def _delete(path: Path, report: PruneReport) -> None:
    def failed(function: object, name: str, exc: BaseException) -> None:
        report.errors.append(f"cannot remove {name}: {getattr(exc, 'strerror', None) or exc}")

    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, onerror=lambda f, n, info: failed(f, n, info[1]))
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        report.errors.append(f"cannot remove {path}: {exc.strerror or exc}")
