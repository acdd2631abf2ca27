"""Parse the files a step writes through `$STATE_OUTPUTS` / `$TASK_OUTPUTS` into diff operations.

Format, one entry per line (blank lines ignored):
    KEY=VALUE         set KEY (split at the first `=`: `a=b=c` sets a to "b=c")
    KEY@=VALUE        append VALUE to the array KEY (created when missing)
    KEY<<DELIM        a multi-line value: the following lines up to a line equal to DELIM
    KEY@<<DELIM       the same, appended
VALUE is parsed as JSON (`123`, `true`, `{"a":1}`, `"quoted"`), else kept as the plain string.
KEY is letters, digits, `_`, `-` and `.`. Anything else is a malformed line: `OutputsError`
names the file and the line, and the step's task fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.engine.document import Op, pointer_escape
from runner.errors import FerryError

_KEY = r"[A-Za-z0-9_.\-]+"
_HEREDOC = re.compile(rf"^({_KEY})(@?)<<\s*(\S+)\s*$")
_ASSIGN = re.compile(rf"^({_KEY})(@?)=(.*)$", re.DOTALL)


class OutputsError(FerryError):
    """A line of an outputs file cannot be parsed."""

    def __init__(self, source: str, line_no: int, line: str, why: str) -> None:
        self.source = source
        self.line_no = line_no
        shown = line if len(line) <= 80 else line[:77] + "..."
        super().__init__(f"{source} line {line_no}: {why}: {shown!r}")


@dataclass(frozen=True)
class Entry:
    """One parsed output: set or append `value` at `key`."""

    key: str
    value: Any
    append: bool = False
    line: int = 0


def parse_value(text: str) -> Any:
    """JSON when the text is JSON, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_outputs(text: str, source: str = "outputs") -> list[Entry]:
    """Every entry of an outputs file, in order; `OutputsError` on a malformed line."""
    lines = text.splitlines()
    entries: list[Entry] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        heredoc = _HEREDOC.match(line)
        if heredoc:
            key, append, delim = heredoc.groups()
            start = i
            while i < len(lines) and lines[i] != delim:
                i += 1
            if i >= len(lines):
                raise OutputsError(source, start, line, f"no closing '{delim}' line")
            value = "\n".join(lines[start:i])
            i += 1
            entries.append(Entry(key, parse_value(value), append == "@", start))
            continue
        assign = _ASSIGN.match(line)
        if not assign:
            why = "expected KEY=VALUE, KEY@=VALUE or KEY<<DELIMITER"
            if "=" in line:
                why = "the key may hold only letters, digits, '_', '-' and '.'"
            raise OutputsError(source, i, line, why)
        key, append, value = assign.groups()
        entries.append(Entry(key, parse_value(value), append == "@", i))
    return entries


def entries_to_ops(entries: list[Entry], current: Mapping[str, Any], prefix: str,
                   source: str = "outputs") -> list[Op]:
    """Operations applying `entries` under the JSON pointer `prefix` (e.g. `/state`) whose
    present content is `current`. Appending to a key that holds a non-array is an error."""
    ops: list[Op] = []
    seen: dict[str, Any] = {}
    for entry in entries:
        path = f"{prefix}/{pointer_escape(entry.key)}"
        if not entry.append:
            ops.append({"op": "add", "path": path, "value": entry.value})
            seen[entry.key] = entry.value
            continue
        now = seen[entry.key] if entry.key in seen else current.get(entry.key)
        if now is None:
            ops.append({"op": "add", "path": path, "value": [entry.value]})
            seen[entry.key] = [entry.value]
        elif isinstance(now, list):
            ops.append({"op": "add", "path": f"{path}/-", "value": entry.value})
            seen[entry.key] = now
        else:
            kind = type(now).__name__
            raise OutputsError(source, entry.line, f"{entry.key}@=...",
                               f"cannot append to '{entry.key}': it holds a {kind}, not an array")
    return ops
