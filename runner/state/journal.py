"""The durable per-run journal: what must reach the control plane, written down before sending.

`journal/<run_id>.jsonl` holds one JSON object per line. Numbered records (`n` from 1, strictly
increasing) are the things to deliver, in order:

    {"kind": "create", "n": 1, "doc": {...}}                        report the run
    {"kind": "diff",   "n": 2, "diff": {"writer", "seq", "ops", "lease"?, ...}}
    {"kind": "log",    "n": 3, "task": id, "offset": int, "data": base64, "lease"?}
    {"kind": "finish", "n": 4, "status": "Completed", "lease"?}

Control lines carry no `n`: `{"kind": "ack", "upto": N}` (the server acknowledged every record up
to N) and `{"kind": "lost", "reason": ...}` (the lease was superseded: keep the file, stop
sending). Records are appended with write + flush + fsync before anything is sent (one fsync per
`append` call: group commit). Ack lines are flushed but not fsynced: losing one in a crash only
means a resend, which the server deduplicates. Acknowledged records leave the file only by
compaction (atomic rewrite: temp file, fsync, rename, fsync of the directory); once everything is
acknowledged the file is deleted. A torn last line (a crash mid-write) is truncated away on open;
a damaged line anywhere else is a `StateError` naming the file and line.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import StateError

SUFFIX = ".jsonl"
RECORD_KINDS = frozenset({"create", "diff", "log", "finish"})
COMPACT_AFTER = 512  # acknowledged records kept in the file before a rewrite is worth it


@dataclass(frozen=True)
class Record:
    """One numbered journal record."""

    n: int
    kind: str
    data: dict[str, Any]


def journal_run_id(path: Path) -> str:
    """The run id a journal file is named after (`<run_id>.jsonl`)."""
    return path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem


class Journal:
    """One run's journal file; thread-safe (the executor appends while the syncer acks)."""

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self.run_id = journal_run_id(path)
        self._fsync = fsync
        self._lock = threading.RLock()
        self._records: list[Record] = []  # unacknowledged, in order
        self._acked = 0
        self._last = 0
        self._acked_in_file = 0  # acknowledged records still present in the file
        self._lost: str | None = None
        self._fh: Any = None
        self._load()

    @classmethod
    def for_run(cls, directory: Path, run_id: str, *, fsync: bool = True) -> Journal:
        """The journal of `run_id` under `directory` (created on the first append)."""
        if not run_id or "/" in run_id or run_id.startswith("."):
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
        """Why sending stopped for good (lease superseded), or None."""
        return self._lost

    def pending(self, limit: int | None = None) -> list[Record]:
        """Unacknowledged records in order (at most `limit`)."""
        with self._lock:
            return list(self._records if limit is None else self._records[:limit])

    def backlog(self) -> int:
        """How many records wait for an acknowledgement."""
        return len(self._records)

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read journal: {exc.strerror}") from exc
        *complete, tail = raw.split(b"\n")
        keep = 0  # bytes of the file that hold whole, good lines
        for index, line in enumerate(complete):
            end = keep + len(line) + 1
            if not line.strip():
                keep = end
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
                self._take(obj)
            except (ValueError, KeyError, TypeError) as exc:
                rest = [*complete[index + 1:], tail]
                if all(not r.strip(b"\0 \t\r") for r in rest):
                    break  # the last line is torn (crash mid-append): it was never sent
                raise StateError(f"{self.path}:{index + 1}: damaged journal line ({exc})") from exc
            keep = end
        # a tail without its newline is a torn append too, even if it happens to parse
        if keep != len(raw):
            self._truncate(keep)

    def _take(self, obj: dict[str, Any]) -> None:
        kind = obj["kind"]
        if kind == "ack":
            upto = int(obj["upto"])
            self._acked = max(self._acked, upto)
            self._last = max(self._last, upto)
            dropped = [r for r in self._records if r.n <= upto]
            self._acked_in_file += len(dropped)
            self._records = [r for r in self._records if r.n > upto]
        elif kind == "lost":
            self._lost = str(obj.get("reason") or "lease lost")
        elif kind in RECORD_KINDS:
            n = int(obj["n"])
            if n <= self._last:
                raise ValueError(f"record number {n} after {self._last}")
            self._records.append(Record(n, kind, obj))
            self._last = n
        else:
            raise ValueError(f"unknown record kind {kind!r}")

    def _truncate(self, size: int) -> None:
        try:
            with open(self.path, "r+b") as fh:
                fh.truncate(size)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise StateError(f"{self.path}: cannot repair torn journal tail: {exc.strerror}") \
                from exc

    # -- writing ---------------------------------------------------------------------------

    def append(self, records: Sequence[dict[str, Any]]) -> list[int]:
        """Number, write and fsync records (one fsync for all); returns their numbers."""
        if not records:
            return []
        with self._lock:
            numbered: list[Record] = []
            n = self._last
            for rec in records:
                if rec.get("kind") not in RECORD_KINDS:
                    raise StateError(f"journal record of unknown kind: {rec.get('kind')!r}")
                n += 1
                numbered.append(Record(n, rec["kind"], {**rec, "n": n}))
            blob = b"".join(_line(r.data) for r in numbered)
            self._write(blob, sync=True)
            self._records.extend(numbered)
            self._last = n
            return [r.n for r in numbered]

    def ack(self, upto: int) -> None:
        """Record that the server acknowledged every record up to `upto`."""
        with self._lock:
            if upto <= self._acked:
                return
            if upto > self._last:
                raise StateError(f"{self.path}: ack {upto} beyond last record {self._last}")
            self._write(_line({"kind": "ack", "upto": upto}), sync=False)
            dropped = sum(1 for r in self._records if r.n <= upto)
            self._records = [r for r in self._records if r.n > upto]
            self._acked = upto
            self._acked_in_file += dropped

    def mark_lost(self, reason: str) -> None:
        """Stop delivery for good (lease superseded) but keep every record for inspection."""
        with self._lock:
            if self._lost is None:
                self._write(_line({"kind": "lost", "reason": reason}), sync=True)
                self._lost = reason

    def maybe_compact(self) -> bool:
        """Compact when everything is acknowledged or enough acknowledged records piled up."""
        with self._lock:
            if self._lost is None and (not self._records or
                                       self._acked_in_file >= COMPACT_AFTER):
                self.compact()
                return True
            return False

    def compact(self) -> None:
        """Rewrite the file without acknowledged records (atomically); delete it when empty."""
        with self._lock:
            self._close_fh()
            if not self._records and self._lost is None:
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise StateError(f"{self.path}: cannot delete journal: {exc.strerror}") \
                        from exc
                _fsync_dir(self.path.parent)
                self._acked_in_file = 0
                return
            tmp = self.path.with_name(self.path.name + ".tmp")
            lines = [_line({"kind": "ack", "upto": self._acked})]
            if self._lost is not None:
                lines.append(_line({"kind": "lost", "reason": self._lost}))
            lines.extend(_line(r.data) for r in self._records)
            try:
                # created 0600: records carry lease tokens, never readable by others even briefly
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(b"".join(lines))
                    fh.flush()
                    if self._fsync:
                        os.fsync(fh.fileno())
                os.chmod(tmp, 0o600)  # a leftover .tmp from a crash keeps its old mode
                os.replace(tmp, self.path)
            except OSError as exc:
                raise StateError(f"{self.path}: cannot compact journal: {exc.strerror}") from exc
            if self._fsync:
                _fsync_dir(self.path.parent)
            self._acked_in_file = 0

    def close(self) -> None:
        """Close the file handle (the journal object stays usable; it reopens on demand)."""
        with self._lock:
            self._close_fh()

    def _close_fh(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _write(self, blob: bytes, *, sync: bool) -> None:
        if self._fh is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._fh = os.fdopen(fd, "ab", buffering=0)
            if created and self._fsync:
                _fsync_dir(self.path.parent)
        start = self._fh.tell()
        try:
            self._fh.write(blob)
            if sync and self._fsync:
                os.fsync(self._fh.fileno())
        except OSError as exc:
            # never leave half a line in the middle of the file: the next append would follow it
            with contextlib.suppress(OSError):
                self._fh.truncate(start)
            raise StateError(f"{self.path}: cannot write journal: {exc.strerror}") from exc


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def journal_paths(directory: Path) -> Iterator[Path]:
    """Every journal file under `directory`, oldest first."""
    if not directory.is_dir():
        return iter(())
    files = [p for p in directory.iterdir() if p.name.endswith(SUFFIX) and p.is_file()]
    return iter(sorted(files, key=lambda p: (p.stat().st_mtime, p.name)))
