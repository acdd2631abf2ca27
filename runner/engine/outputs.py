"""Parse the files a step writes through `$STATE_OUTPUTS` / `$TASK_OUTPUTS` into diff operations.

Format, one entry per line (blank lines ignored):
    KEY=VALUE         set KEY (split at the first `=`: `a=b=c` sets a to "b=c")
    KEY@=VALUE        append VALUE to the array KEY (created when missing)
    KEY<<DELIM        a multi-line value: the following lines up to a line equal to DELIM
    KEY@<<DELIM       the same, appended
VALUE is parsed as JSON (`123`, `true`, `{"a":1}`, `"quoted"`), else kept as the plain string.
KEY is letters, digits, `_`, `-` and `.`. Anything else is a malformed line: `OutputsError`
names the file and the line, and the step's task fails. So does a file over
`MAX_OUTPUTS_FILE_BYTES` or a value (after an append: the whole array) over
`MAX_STATE_VALUE_BYTES` as compact JSON, naming the file or key, the size and the limit.

`OutputsFile` is one such file for a whole task attempt: created once (mode 0666, so a container
user other than ours can write it), read and emptied after each successful step. Creating a file
costs far more than checking that one is still empty, and most steps write nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runner.document import Op, pointer_escape
from runner.errors import FerryError
from runner.limits import MAX_OUTPUTS_FILE_BYTES, MAX_STATE_VALUE_BYTES, human_size, json_size

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


class OutputsFileError(OutputsError):
    """An outputs file was replaced by something Ferry will not read (symlink, fifo, ...)."""

    def __init__(self, message: str) -> None:
        FerryError.__init__(self, message)


_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class OutputsFile:
    """A task's `$STATE_OUTPUTS` or `$TASK_OUTPUTS` file, emptied after each step it served.

    Every access goes through a descriptor of its directory (`close()` releases it): checking
    one name costs a fraction of resolving the whole path again after every step."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self._file = path.name
        self._dir: int | None = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.reset()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> OutputsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the directory descriptor. Idempotent."""
        if self._dir is not None:
            os.close(self._dir)
            self._dir = None

    def _open(self, flags: int, mode: int = 0o666) -> int:
        return os.open(self._file, flags | _OPEN_FLAGS, mode, dir_fd=self._dir)

    def reset(self) -> None:
        """(Re)create the file empty, mode 0666, never following a link a step left there."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._file, dir_fd=self._dir)
        fd = self._open(os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            os.fchmod(fd, 0o666)  # not narrowed by the umask
        finally:
            os.close(fd)

    def take(self) -> str:
        """What the last step wrote (usually nothing: one lstat), leaving the file empty.
        `OutputsFileError` when the step replaced the file by something else than a file."""
        try:
            info = os.lstat(self._file, dir_fd=self._dir)
        except FileNotFoundError:  # the step removed it: it wrote nothing
            self.reset()
            return ""
        if not stat.S_ISREG(info.st_mode):
            raise OutputsFileError(f"{self.name}: the step replaced the file with something "
                                   "that is not a regular file")
        if info.st_size == 0:
            return ""
        if info.st_size > MAX_OUTPUTS_FILE_BYTES:
            self._too_large(info.st_size)
        writable = True
        try:
            fd = self._open(os.O_RDWR)
        except PermissionError:  # re-created by another user (a container's root)
            writable = False
            fd = self._open(os.O_RDONLY)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OutputsFileError(f"{self.name}: not a regular file")
            chunks = []
            size = 0
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_OUTPUTS_FILE_BYTES:  # it grew after the lstat: read no further
                    self._too_large(max(size, os.fstat(fd).st_size))
            if writable:
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)
        if not writable:
            self.reset()
        return b"".join(chunks).decode("utf-8", "replace")

    def _too_large(self, size: int) -> None:
        raise OutputsFileError(f"{self.name}: the step wrote {size} bytes, over the limit of "
                               f"{MAX_OUTPUTS_FILE_BYTES} bytes "
                               f"({human_size(MAX_OUTPUTS_FILE_BYTES)}) for one step")


class StateInput:
    """`$CODEMOD_STATE`: a file holding the workflow state as JSON, as upstream gives its steps;
    rewritten before a step only when the state changed since it was last written. Written to a
    new file renamed over the old one, so a step that left a link there cannot redirect it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._serial = -1

    def refresh(self, store: _StateSource) -> None:
        """Write the store's state if it changed (call holding the store's lock)."""
        if store.state_serial == self._serial and self.path.exists():
            return
        text = json.dumps(store.doc.get("state") or {}, ensure_ascii=False,
                          separators=(",", ":"))
        tmp = self.path.with_name(self.path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o644)
        try:
            os.fchmod(fd, 0o644)  # readable by a container user other than ours
            data = memoryview(text.encode("utf-8"))
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._serial = store.state_serial


class _StateSource(Protocol):
    state_serial: int
    doc: dict[str, Any]


@dataclass(frozen=True)
class Entry:
    """One parsed output: set or append `value` at `key`."""

    key: str
    value: Any
    append: bool = False
    line: int = 0
    text: str | None = None
    """The value as written (before JSON parsing)."""


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
            entries.append(Entry(key, parse_value(value), append == "@", start, value))
            continue
        assign = _ASSIGN.match(line)
        if not assign:
            why = "expected KEY=VALUE, KEY@=VALUE or KEY<<DELIMITER"
            if "=" in line:
                why = "the key may hold only letters, digits, '_', '-' and '.'"
            raise OutputsError(source, i, line, why)
        key, append, value = assign.groups()
        entries.append(Entry(key, parse_value(value), append == "@", i, value))
    return entries


def entries_to_ops(entries: list[Entry], current: Mapping[str, Any], prefix: str,
                   source: str = "outputs") -> list[Op]:
    """Operations applying `entries` under the JSON pointer `prefix` (e.g. `/state`) whose
    present content is `current`. Appending to a key that holds a non-array is an error, and so
    is a value (an array after appends: all of it) over `MAX_STATE_VALUE_BYTES`."""
    ops: list[Op] = []
    seen: dict[str, Any] = {}
    sizes: dict[str, int] = {}  # compact JSON size of each key's value after these entries
    for entry in entries:
        path = f"{prefix}/{pointer_escape(entry.key)}"
        if not entry.append:
            ops.append({"op": "add", "path": path, "value": entry.value})
            seen[entry.key] = entry.value
            sizes[entry.key] = _checked(entry.key, json_size(entry.value), source)
            continue
        now = seen[entry.key] if entry.key in seen else current.get(entry.key)
        if now is None:
            ops.append({"op": "add", "path": path, "value": [entry.value]})
            seen[entry.key] = [entry.value]
            sizes[entry.key] = _checked(entry.key, json_size([entry.value]), source)
        elif isinstance(now, list):
            ops.append({"op": "add", "path": f"{path}/-", "value": entry.value})
            seen[entry.key] = now
            before = sizes[entry.key] if entry.key in sizes else json_size(now)
            # one more item: a comma (none after "[") and the item itself
            grown = before + json_size(entry.value) + (1 if before > 2 else 0)
            sizes[entry.key] = _checked(entry.key, grown, source)
        else:
            kind = type(now).__name__
            raise OutputsError(source, entry.line, f"{entry.key}@=...",
                               f"cannot append to '{entry.key}': it holds a {kind}, not an array")
    return ops


def _checked(key: str, size: int, source: str) -> int:
    """`size`, or `OutputsFileError` naming the key when it is over the value limit."""
    if size > MAX_STATE_VALUE_BYTES:
        raise OutputsFileError(f"{source}: the value of '{key}' is {size} bytes as JSON, over "
                               f"the limit of {MAX_STATE_VALUE_BYTES} bytes "
                               f"({human_size(MAX_STATE_VALUE_BYTES)})")
    return size
