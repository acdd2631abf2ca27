"""The durable per-run journal: what must reach the control plane, written down before sending.

`journal/<run_id>.jsonl` holds one checksummed JSON object per line (`journal_lines`). Numbered
records (`n` from 1, consecutive) are the things to deliver, in order; each carries everything a
later process needs to deliver it (the lease, and for diffs the writer and seq):

    {"kind": "create", "n": 1, "doc": {...}}                        report the run
    {"kind": "diff",   "n": 2, "lease"?, "diff": {"writer", "seq", "ops", ...}}
    {"kind": "log",    "n": 3, "lease"?, "task": id, "offset": int, "data": base64}
    {"kind": "finish", "n": 4, "lease"?, "status": "Completed"}

Control lines carry no `n`: `{"kind": "ack", "upto": N}` (the server acknowledged every record up
to N). An `append` writes all its records with one write loop and one fsync (group commit), whole
or not at all: a short write or a failed fsync is rolled back (truncated) before the error is
raised, so a full disk never leaves half a line for the next append to be glued to. Ack lines
are not fsynced, and an ack that cannot be written at all is kept in memory only: losing one
means a resend, which the server deduplicates. Acknowledged records leave the file by compaction
(temp file, fsync, rename, fsync of the directory); once everything is acknowledged the file is
deleted.

Reading: trailing lines that are torn (a crash mid-append: never sent) are truncated away. A line
in the middle that fails its checksum or does not parse is damage: it is listed in `damage`, and
if a record is missing because of it, `gap` is its number; only the records before the gap are
`pending` (deliverable) and nothing more may be appended. The syncer then ends the run on the
server and sets the file aside (`set_aside`).

One process at a time owns a journal: the owner holds an exclusive `flock` on `<run_id>.lock` in
the same directory (released by the kernel if it dies); another opener gets `JournalBusy`.
`readonly=True` opens a snapshot without the lock and never writes (metrics, tests).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import StateError
from runner.state import journal_lines as lines
from runner.state.journal_files import (
    ASIDE_KINDS,
    LOCK_SUFFIX,
    SUFFIX,
    JournalBusy,
    fsync_dir,
    journal_paths,
    journal_run_id,
    move_aside,
    rewrite,
    set_aside_paths,
    take_owner_lock,
    truncate,
    write_all,
    write_error,
)
from runner.state.journal_read import RECORD_KINDS, read_journal

__all__ = ["LOCK_SUFFIX", "SUFFIX", "Journal", "JournalBusy", "Record", "journal_paths",
           "journal_run_id", "set_aside_paths"]

COMPACT_AFTER = 512  # acknowledged records kept in the file before a rewrite is worth it


@dataclass(frozen=True)
class Record:
    """One numbered journal record."""

    n: int
    kind: str
    data: dict[str, Any]

    @property
    def lease(self) -> str | None:
        """The lease token the record must be sent with (None for runs without a lease)."""
        lease = self.data.get("lease")
        if not lease and self.kind == "diff":  # journals written before leases moved up
            lease = (self.data.get("diff") or {}).get("lease")
        return str(lease) if lease else None


class Journal:
    """One run's journal file; thread-safe (the executor appends while the syncer acks)."""

    def __init__(self, path: Path, *, fsync: bool = True, readonly: bool = False) -> None:
        self.path = path
        self.run_id = journal_run_id(path)
        self.readonly = readonly
        self._fsync = fsync
        self._lock = threading.RLock()
        self._records: list[Record] = []  # unacknowledged, in order
        self._acked = 0
        self._last = 0
        self._acked_in_file = 0
        self._lost: str | None = None
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._closed = False
        self.damage: list[str] = []
        """Damaged lines in the middle of the file, as `line N: why` (loudly reported)."""
        self.gap: int | None = None
        """The first unacknowledged record number lost to damage (None: nothing lost)."""
        self.torn = 0
        """Bytes of a torn last append removed when the file was opened."""
        if not readonly:
            self._take_lock()
        try:
            self._load()
        except BaseException:
            self._release_lock()
            raise

    @classmethod
    def for_run(cls, directory: Path, run_id: str, *, fsync: bool = True) -> Journal:
        """The journal of `run_id` under `directory` (created on the first append)."""
        if not run_id or "/" in run_id or run_id.startswith(".") or "\0" in run_id:
            raise StateError(f"invalid run id for a journal: {run_id!r}")
        return cls(directory / f"{run_id}{SUFFIX}", fsync=fsync)

    # -- reading ---------------------------------------------------------------------------

    @property
    def acked(self) -> int:
        """Highest record number the server acknowledged."""
        return self._acked

    @property
    def last(self) -> int:
        """Highest record number written."""
        return self._last

    @property
    def lost(self) -> str | None:
        """Why sending stopped for good (a `lost` line of an older version), or None."""
        return self._lost

    def pending(self, limit: int | None = None) -> list[Record]:
        """Deliverable unacknowledged records in order (at most `limit`): none past a `gap`."""
        with self._lock:
            records = self._records
            if self.gap is not None:
                records = [r for r in records if r.n < self.gap]
            return list(records if limit is None else records[:limit])

    def backlog(self) -> int:
        """How many records wait for an acknowledgement (undeliverable ones included)."""
        return len(self._records)

    def leases(self) -> set[str]:
        """The lease tokens of the records waiting (to tell an older attempt's journal)."""
        with self._lock:
            return {lease for r in self._records if (lease := r.lease)}

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read journal: {exc.strerror}") from exc
        read = read_journal(raw)
        self._records = [Record(n, kind, data) for n, kind, data in read.records]
        self._acked, self._last, self._lost = read.acked, read.last, read.lost
        self._acked_in_file = read.acked_in_file
        self.damage, self.gap = read.damage, read.gap
        if read.keep != len(raw):
            self.torn = len(raw) - read.keep
            if not self.readonly:
                truncate(self.path, read.keep)

    # -- the owner's lock ------------------------------------------------------------------

    @property
    def lock_path(self) -> Path:
        """The file whose flock marks the journal's owner."""
        return self.path.with_name(self.run_id + LOCK_SUFFIX)

    def _take_lock(self) -> None:
        self._lock_fd = take_owner_lock(self.path, self.lock_path)

    def _release_lock(self, *, remove: bool = False) -> None:
        if self._lock_fd is not None:
            if remove:  # the journal is gone: so is the reason for its lock file
                with contextlib.suppress(OSError):
                    self.lock_path.unlink()
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)

    # -- writing ---------------------------------------------------------------------------

    def append(self, records: Sequence[dict[str, Any]]) -> list[int]:
        """Number, write and fsync records (one fsync for all), whole or not at all; returns
        their numbers. `NoSpace` when the disk is full (nothing of them stays in the file)."""
        if not records:
            return []
        with self._lock:
            if self.gap is not None:
                raise StateError(f"{self.path}: damaged ({self.damage[0]}): nothing more may be "
                                 "appended")
            numbered: list[Record] = []
            n = self._last
            for rec in records:
                if rec.get("kind") not in RECORD_KINDS:
                    raise StateError(f"journal record of unknown kind: {rec.get('kind')!r}")
                n += 1
                numbered.append(Record(n, rec["kind"], {**rec, "n": n}))
            blob = b"".join(lines.encode(r.data) for r in numbered)
            self._write(blob, sync=True, what=f"{len(numbered)} record(s)")
            self._records.extend(numbered)
            self._last = n
            return [r.n for r in numbered]

    def ack(self, upto: int) -> None:
        """Record that the server acknowledged every record up to `upto`. The line is best
        effort: when it cannot be written (a full disk), the acknowledgement is kept in memory
        and a later open resends those records, which the server deduplicates."""
        with self._lock:
            if upto <= self._acked:
                return
            if upto > self._last:
                raise StateError(f"{self.path}: ack {upto} beyond last record {self._last}")
            with contextlib.suppress(StateError):
                self._write(lines.encode({"kind": "ack", "upto": upto}), sync=False,
                            what="an acknowledgement")
            dropped = sum(1 for r in self._records if r.n <= upto)
            self._records = [r for r in self._records if r.n > upto]
            self._acked = upto
            self._acked_in_file += dropped

    def mark_lost(self, reason: str) -> None:
        """Stop delivery for good: a `lost` line (older journals have it; delivery then settles
        the journal as superseded and moves it aside)."""
        with self._lock:
            if self._lost is None:
                self._write(lines.encode({"kind": "lost", "reason": reason}), sync=True,
                            what="a lost mark")
                self._lost = reason

    def maybe_compact(self) -> bool:
        """Compact when everything is acknowledged or enough acknowledged records piled up.
        A compaction that fails (a full disk) leaves the file as it is: it is tried again."""
        with self._lock:
            if self.gap is None and self._lost is None and (
                    not self._records or self._acked_in_file >= COMPACT_AFTER):
                try:
                    self.compact()
                except StateError:
                    if not self._records:
                        raise  # the file could not even be deleted
                    return False
                return True
            return False

    def compact(self) -> None:
        """Rewrite the file without acknowledged records (atomically); delete it when empty."""
        with self._lock:
            self._check_writable()
            if self.gap is not None:
                raise StateError(f"{self.path}: damaged journals are kept as they are")
            self._close_fd()
            if not self._records and self._lost is None:
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise StateError(f"{self.path}: cannot delete journal: {exc.strerror}") \
                        from exc
                fsync_dir(self.path.parent)
                self._acked_in_file = 0
                self.damage.clear()
                return
            out = [lines.encode({"kind": "ack", "upto": self._acked})]
            if self._lost is not None:
                out.append(lines.encode({"kind": "lost", "reason": self._lost}))
            out.extend(lines.encode(r.data) for r in self._records)
            rewrite(self.path, b"".join(out), fsync=self._fsync)
            self._acked_in_file = 0

    def set_aside(self, kind: str, reason: str) -> Path:
        """Move the file to `<dir>/<kind>/<run_id>.<UTC time>.jsonl` (kept for inspection,
        never delivered again) with `reason` as its last line; returns the new path."""
        if kind not in ASIDE_KINDS:
            raise ValueError(f"unknown set-aside kind {kind!r}")
        with self._lock:
            self._check_writable()
            self._close_fd()
            target = move_aside(self.path, self.run_id, kind, reason)
            self._records = []
            self._closed = True
            self._release_lock(remove=True)
            return target

    def close(self) -> None:
        """Close the file and give up ownership (a closed journal refuses writes)."""
        with self._lock:
            self._close_fd()
            self._closed = True
            self._release_lock(remove=not self.path.exists())

    def _check_writable(self) -> None:
        if self.readonly:
            raise StateError(f"{self.path}: opened read-only")
        if self._closed:
            raise StateError(f"{self.path}: journal closed")

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _write(self, blob: bytes, *, sync: bool, what: str) -> None:
        self._check_writable()
        if self._fd is None:
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                created = not self.path.exists()
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                                   0o600)
            except OSError as exc:
                raise write_error(exc, self.path, f"journal {what}") from exc
            if created and self._fsync:
                fsync_dir(self.path.parent)
            if created and self._acked:
                # a file re-created after everything was delivered and deleted: say where the
                # numbering stands, or the first record would look like the end of a gap
                blob = lines.encode({"kind": "ack", "upto": self._acked}) + blob
        fd = self._fd
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            write_all(fd, blob)
            if sync and self._fsync:
                os.fsync(fd)
        except OSError as exc:
            # never leave part of a line behind: the next append would be glued to it
            try:
                os.ftruncate(fd, start)
                if self._fsync:
                    os.fsync(fd)
            except OSError:
                # the file may end with a partial line: reopening treats it as a torn tail
                self._close_fd()
            raise write_error(exc, self.path, f"journal {what}") from exc
