"""Masking: every secret value, and its common encodings, replaced by `***` in output.

For each value Ferry masks (all as bytes, UTF-8):
- the value, and each line of a multi-line value (lines shorter than 4 characters are left
  alone: they would mask ordinary text);
- base64 (standard and URL-safe alphabets) at the 3 alignments a value can have inside a longer
  encoded stream: only the characters that depend on the value's bytes alone, so the value is
  found whatever surrounds it and with or without padding;
- URL-encoding (`quote` with and without '/' safe, and `quote_plus`), JSON string escaping
  (ASCII-only and not), and hex (lower and upper case);
- for a multi-line value, the base64, URL and JSON forms of the whole value too (those carry
  no newline).

No pattern holds a newline, so a match never spans lines. Matching is one Aho-Corasick pass
(leftmost-longest, `ahocorasick_rs`) over each chunk. `StreamMasker` holds back only the end of
an unfinished line that could be the start of a pattern, so a value split across output chunks
is still masked while ordinary output goes through at once.

Limits (README "Secrets"): a value transformed otherwise (reversed, split into pieces printed
apart, another encoding, base64 wrapped across lines) is not recognised.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

import ahocorasick_rs

from runner.secrets.values import MIN_SECRET_LENGTH

REDACTED = "***"
_REDACTED = REDACTED.encode()
_NL = 10


def _b64_cores(data: bytes) -> Iterator[bytes]:
    """The part of base64(prefix + data) that depends on `data` alone, for 0, 1, 2 prefix
    bytes, in both alphabets."""
    n = len(data)
    for align in range(3):
        encoded = base64.b64encode(b"\0" * align + data)
        start = -(-8 * align // 6)           # first character holding no prefix bit
        end = (8 * (align + n)) // 6         # last character holding no following bit
        core = encoded[start:end]
        yield core
        yield core.replace(b"+", b"-").replace(b"/", b"_")


def _encodings(text: str) -> Iterator[bytes]:
    raw = text.encode("utf-8", "surrogateescape")
    yield from _b64_cores(raw)
    for form in (quote(raw, safe=""), quote(raw), quote_plus(raw),
                 json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]):
        yield form.encode("utf-8", "surrogateescape")
    hexed = binascii.hexlify(raw)
    yield hexed
    yield hexed.upper()


def patterns_for(value: str) -> set[bytes]:
    """Every byte string masked for one secret value (see the module docstring)."""
    found: set[bytes] = set()
    lines = [line.strip("\r") for line in value.split("\n")]
    for line in lines:
        if len(line.strip()) < MIN_SECRET_LENGTH:
            continue
        found.add(line.encode("utf-8", "surrogateescape"))
        found.update(_encodings(line))
    if len(lines) > 1:
        found.update(_encodings(value))
    return {p for p in found if len(p) >= MIN_SECRET_LENGTH and b"\n" not in p}


class Masker:
    """Replaces the secret values it was built with (and their encodings) by `***`."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self.values: frozenset[str] = frozenset(v for v in values if v)
        patterns: set[bytes] = set()
        for value in self.values:
            patterns |= patterns_for(value)
        self._patterns = sorted(patterns)
        # A DFA: twice the NFA's speed here (bench/masking.py) for a few hundred patterns.
        self._auto = (ahocorasick_rs.BytesAhoCorasick(
            self._patterns, matchkind=ahocorasick_rs.MatchKind.LeftmostLongest,
            implementation=ahocorasick_rs.Implementation.DFA)
            if self._patterns else None)
        self.longest = max((len(p) for p in self._patterns), default=0)
        # Every proper prefix of a pattern: what the end of a chunk may be the start of.
        self._prefixes = {p[:k] for p in self._patterns for k in range(1, len(p))}
        self._first = frozenset(p[0] for p in self._patterns)

    @property
    def pattern_count(self) -> int:
        """How many byte strings are masked (values, lines and their encodings)."""
        return len(self._patterns)

    @property
    def active(self) -> bool:
        """Whether there is anything to mask."""
        return self._auto is not None

    def with_values(self, values: Iterable[str]) -> Masker:
        """A masker for these values as well as this one's."""
        return Masker(self.values | frozenset(values))

    def found_in(self, data: bytes | str) -> bool:
        """Whether `data` holds a secret value or one of its encodings."""
        if self._auto is None:
            return False
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        return bool(self._auto.find_matches_as_indexes(raw))

    def mask(self, data: bytes) -> bytes:
        """`data` with every match replaced (a complete buffer: nothing held back)."""
        out, _ = self._replace(data, len(data))
        return out

    def text(self, text: str) -> str:
        """`text` with every match replaced."""
        if self._auto is None or not text:
            return text
        raw = text.encode("utf-8", "surrogateescape")
        masked = self.mask(raw)
        return text if masked is raw else masked.decode("utf-8", "surrogateescape")

    def stream(self) -> StreamMasker:
        """A masker for one stream of chunks (a step's output)."""
        return StreamMasker(self)

    def cut(self, buf: bytes) -> int:
        """Where the part of `buf` that may be the start of a pattern begins (len: none)."""
        n = len(buf)
        if self._auto is None or not n or buf[-1] == _NL:
            return n
        start = max(buf.rfind(b"\n") + 1, n - self.longest + 1)
        first, prefixes = self._first, self._prefixes
        for i in range(start, n):
            if buf[i] in first and buf[i:] in prefixes:
                return i
        return n

    def _replace(self, buf: bytes, cut: int) -> tuple[bytes, int]:
        """`buf[:end]` masked, and `end`: `cut`, or the end of a match that crosses it."""
        if self._auto is None:
            return (buf if cut == len(buf) else buf[:cut]), cut
        matches = self._auto.find_matches_as_indexes(buf)
        if not matches or matches[0][1] >= cut:
            return (buf if cut == len(buf) else buf[:cut]), cut
        parts: list[bytes] = []
        pos = 0
        for _, start, end in matches:
            if start >= cut:
                break
            parts.append(buf[pos:start])
            parts.append(_REDACTED)
            pos = end
        end = max(cut, pos)
        parts.append(buf[pos:end])
        return b"".join(parts), end


class StreamMasker:
    """Masks a stream chunk by chunk; a value split across chunks is still masked."""

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """What can be passed on now, masked (maybe less than was fed: see `flush`)."""
        masker = self._masker
        if not masker.active:
            return data
        buf = self._held + data if self._held else data
        out, end = masker._replace(buf, masker.cut(buf))
        self._held = buf[end:]
        return out

    def flush(self) -> bytes:
        """Whatever was held back, masked: call at the end of the stream."""
        held, self._held = self._held, b""
        return self._masker.mask(held) if held else b""

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for more output or `flush`."""
        return len(self._held)
