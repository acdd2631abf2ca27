"""Reading a journal file: its records, acknowledgements, damage and torn tail (no I/O here).

Trailing lines that are torn (a crash mid-append: zeroed or half-written, never sent) are left
out of `keep`, the bytes worth keeping. A line in the middle that fails its checksum or does not
parse is damage, listed in `damage`; whether it cost an unacknowledged record is told by the
record numbers around it (consecutive in a healthy file): `gap` is the first such number.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from runner.state import journal_lines as lines
from runner.state.journal_lines import LineError

RECORD_KINDS = frozenset({"create", "diff", "log", "finish"})


@dataclass
class ReadJournal:
    """What a journal file holds."""

    records: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    """Unacknowledged records in order: (number, kind, the record)."""
    acked: int = 0
    last: int = 0
    acked_in_file: int = 0
    lost: str | None = None
    damage: list[str] = field(default_factory=list)
    gap: int | None = None
    keep: int = 0
    _numbers: list[int] = field(default_factory=list)

    def take(self, obj: dict[str, Any]) -> None:
        """One intact line; `ValueError`/`KeyError`/`TypeError` for one that makes no sense."""
        kind = obj["kind"]
        if kind == "ack":
            upto = int(obj["upto"])
            self.acked = max(self.acked, upto)
            self.last = max(self.last, upto)
            dropped = [r for r in self.records if r[0] <= upto]
            self.acked_in_file += len(dropped)
            self.records = [r for r in self.records if r[0] > upto]
        elif kind == "lost":
            self.lost = str(obj.get("reason") or "lease lost")
        elif kind in RECORD_KINDS:
            n = int(obj["n"])
            if self._numbers and n <= self._numbers[-1]:
                raise ValueError(f"record number {n} after {self._numbers[-1]}")
            self._numbers.append(n)
            if n > self.acked:
                self.records.append((n, kind, obj))
            self.last = max(self.last, n)
        else:
            raise ValueError(f"unknown record kind {kind!r}")

    def find_gap(self, suspects: list[int]) -> None:
        """The first unacknowledged record number missing from the file, if any. `suspects`
        are the last record numbers before damaged lines that may have held a record."""
        numbers = self._numbers
        missing: list[int] = []
        for before, after in itertools.pairwise(numbers):
            if after > before + 1:
                missing.append(before + 1)
        if numbers and self.records and self.records[0][0] > self.acked + 1:
            missing.append(self.acked + 1)  # the records right after the ack line are gone
        for before in suspects:
            if not any(n > before for n in numbers):  # a damaged record after the last good one
                missing.append(before + 1)
        lost = sorted(n for n in missing if n > self.acked)
        self.gap = lost[0] if lost else None


def read_journal(raw: bytes) -> ReadJournal:
    """Parse a journal file's bytes."""
    out = ReadJournal()
    *complete, tail = raw.split(b"\n")
    first = next((c for c in complete if c.strip()), tail)
    legacy = bool(first) and not lines.has_checksum(first)  # written before checksums
    parsed: list[dict[str, Any] | LineError | None] = []
    for line in complete:
        if not line:
            parsed.append(None)
            continue
        try:
            parsed.append(lines.decode(line, legacy=legacy))
        except LineError as exc:
            parsed.append(exc)
    end = len(parsed)
    while end and not isinstance(parsed[end - 1], dict):
        end -= 1  # a torn append (zeroed or half-written lines, blank lines)
    out.keep = sum(len(c) + 1 for c in complete[:end])
    suspects: list[int] = []
    for index in range(end):
        item = parsed[index]
        if item is None:
            continue
        try:
            if isinstance(item, LineError):
                raise item
            out.take(item)
        except (LineError, ValueError, KeyError, TypeError) as exc:
            out.damage.append(f"line {index + 1}: {exc}")
            if _maybe_record(complete[index]):
                suspects.append(out._numbers[-1] if out._numbers else out.acked)
    out.find_gap(suspects)
    return out


def _maybe_record(raw: bytes) -> bool:
    """Whether a damaged line may have held a record (rather than an acknowledgement)."""
    return b'"n":' in raw or b'"upto":' not in raw
