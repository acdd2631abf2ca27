"""One journal line: a JSON object whose first member is a CRC-32 of the rest.

    {"crc":"1c291ca3","kind":"diff","n":2,"lease":"...","diff":{...}}

The checksum covers the line's own JSON text without the `"crc":"........",` member (that is:
`{` followed by everything after it), so checking it needs no re-encoding. A line that fails the
check or does not parse is damaged; whether that is a torn append (the last line, never sent) or
damage in the middle is for the reader to decide. Lines written before checksums existed (no
`crc` member) are accepted only in a file that started without them.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

_PREFIX = b'{"crc":"'
_HEAD = len(_PREFIX) + 8 + 2  # {"crc":"xxxxxxxx",


class LineError(ValueError):
    """A line that is not a whole, intact journal line."""


def encode(obj: dict[str, Any]) -> bytes:
    """The line for `obj` (a non-empty dict), with its checksum and the newline."""
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) < 3 or body[:2] != b'{"':
        raise ValueError("a journal line holds a non-empty JSON object")
    return b'%s%08x",%s\n' % (_PREFIX, zlib.crc32(body), body[1:])


def has_checksum(raw: bytes) -> bool:
    """Whether the line was written with a checksum."""
    return raw.startswith(_PREFIX)


def decode(raw: bytes, *, legacy: bool = False) -> dict[str, Any]:
    """The object of one line (without its newline); `LineError` when it is damaged.
    `legacy` accepts a line without a checksum (a file written before they existed)."""
    if has_checksum(raw):
        if len(raw) <= _HEAD or raw[_HEAD - 2:_HEAD] != b'",':
            raise LineError("malformed checksum member")
        try:
            expected = int(raw[len(_PREFIX):_HEAD - 2], 16)
        except ValueError:
            raise LineError("malformed checksum member") from None
        body = b"{" + raw[_HEAD:]
        if zlib.crc32(body) != expected:
            raise LineError("checksum mismatch")
    elif legacy:
        body = raw
    else:
        raise LineError("no checksum")
    try:
        obj = json.loads(body)
    except ValueError as exc:
        raise LineError(f"not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise LineError("not a JSON object")
    return obj
