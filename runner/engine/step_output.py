"""The output path of a task's steps: every byte to the task log, whole lines to `OutputLine`,
secrets masked before either sees them.

Linear in time and bounded in memory whatever a step prints: each chunk is split once, and a
line is never held longer than `MAX_LINE` bytes. A longer line (output without a newline, a
`\\r` progress bar) is shown as pieces of `MAX_LINE` bytes, cut at a UTF-8 character boundary;
the log keeps every byte as written.
"""

from __future__ import annotations

from collections.abc import Callable

from runner.secrets.masker import StreamMasker

MAX_LINE = 64 * 1024
"""The longest line (in bytes) an `OutputLine` event carries; longer lines are split."""

_LF = b"\n"


def _cut(buf: bytes, start: int) -> int:
    """Where the piece of `buf` from `start` (longer than MAX_LINE) ends: MAX_LINE bytes on, or
    up to 3 bytes earlier so a UTF-8 character is not cut in two (invalid UTF-8: MAX_LINE)."""
    cut = start + MAX_LINE
    while cut > start + MAX_LINE - 3 and (buf[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if (buf[cut] & 0xC0) != 0x80 else start + MAX_LINE


class StepOutput:
    """The output sink of a task's steps (one per attempt; `flush` ends a step's last line).

    `append(data)` receives every chunk as it arrives (the task log); `lines(texts)` receives
    the lines a chunk completed (at most one call per chunk), each without its newline (a
    trailing `\\r` of a CRLF dropped), decoded as UTF-8 with invalid bytes replaced."""

    def __init__(self, append: Callable[[bytes], None], lines: Callable[[list[str]], None], *,
                 mask: StreamMasker | None = None) -> None:
        self._append = append
        self._lines = lines
        self._mask = mask
        """Holds back at most a secret's length of output, in case it continues one."""
        self._out: list[str] = []
        self._pending: list[bytes] = []
        """The current line's bytes so far, in pieces (joined once, when the line ends)."""
        self._pending_len = 0

    def __call__(self, data: bytes) -> None:
        if self._mask is not None:
            data = self._mask.feed(data)
            if not data:
                return
        self._pass(data)

    def _pass(self, data: bytes) -> None:
        self._append(data)
        if _LF not in data:
            self._add(data)
        else:
            self._split_lines(data)
        if self._out:
            out, self._out = self._out, []
            self._lines(out)

    def _split_lines(self, data: bytes) -> None:
        lines = data.split(_LF)
        last = lines.pop()
        if self._pending:
            self._add(lines[0])
            lines[0] = self._take()
        for raw in lines:
            if len(raw) > MAX_LINE:
                raw = raw[self._split(raw):]
            self._emit(raw.rstrip(b"\r"))
        if last:
            self._add(last)

    def _add(self, piece: bytes) -> None:
        """Extend the current line; emit MAX_LINE pieces of it as soon as it is that long."""
        if not piece:
            return
        self._pending.append(piece)
        self._pending_len += len(piece)
        if self._pending_len <= MAX_LINE:
            return
        buf = self._take()
        rest = buf[self._split(buf):]
        if rest:
            self._pending = [rest]
            self._pending_len = len(rest)

    def _split(self, buf: bytes) -> int:
        """Emit `buf` in MAX_LINE pieces while more than MAX_LINE bytes remain; where the
        remainder starts."""
        start = 0
        while len(buf) - start > MAX_LINE:
            cut = _cut(buf, start)
            self._emit(buf[start:cut])
            start = cut
        return start

    def _take(self) -> bytes:
        buf = b"".join(self._pending)
        self._pending = []
        self._pending_len = 0
        return buf

    def _emit(self, raw: bytes) -> None:
        self._out.append(raw.decode("utf-8", "replace"))

    def flush(self) -> None:
        """The step ended: what the masker held back goes on (it did not begin a secret), and
        the unfinished last line is a line."""
        held = self._mask.flush() if self._mask is not None else b""
        if held:
            self._pass(held)
        if self._pending:
            self._lines([self._take().decode("utf-8", "replace")])
