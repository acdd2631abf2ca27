"""Read a workflow file (YAML or JSON) into plain Python values plus a path -> (line, column) map.

Hostile input is refused before it can cost much: files over `MAX_BYTES` are not read, NUL bytes
and invalid UTF-8 are reported with their line, YAML is composed from libyaml's event stream (no
recursion, so a deep document cannot crash the interpreter) with a depth limit, and aliases are
shared, never copied, while their expanded size is counted against `MAX_NODES` (alias bombs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from runner.errors import Problem, WorkflowInvalid
from runner.workflow.yamlsource import Located, PathKey, YamlLimits, compose_yaml

if TYPE_CHECKING:
    pass

MAX_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 1_000_000

FORMATS = ("yaml", "json")
_EXTENSIONS = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}


@dataclass
class LoadedDocument:
    """A parsed workflow file: its data, where each part came from, and non-fatal problems."""

    data: Any
    source: str
    fmt: str
    positions: dict[tuple[PathKey, ...], tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def locate(self, path: tuple[PathKey, ...]) -> tuple[int, int] | None:
        """(line, column) of `path`, else of its nearest located ancestor, 1-based."""
        for end in range(len(path), -1, -1):
            pos = self.positions.get(path[:end])
            if pos is not None:
                return pos
        return None


def format_for(source: str) -> str | None:
    """'yaml' or 'json' from the file extension; None when the extension says nothing."""
    return _EXTENSIONS.get(Path(source).suffix.lower())


def _fail(source: str, message: str, line: int | None = None,
          column: int | None = None) -> NoReturn:
    raise WorkflowInvalid(source, [Problem("", message, line, column)])


def decode(raw: str | bytes, source: str) -> str:
    """Text of a workflow file; refuses oversize input, binary data and invalid UTF-8."""
    if len(raw) > MAX_BYTES:
        _fail(source, f"file is larger than the {MAX_BYTES // (1024 * 1024)} MB limit "
                      f"({len(raw)} bytes)")
    if isinstance(raw, bytes):
        nul = raw.find(b"\x00")
        if nul >= 0:
            line = raw.count(b"\n", 0, nul) + 1
            _fail(source, f"binary data (NUL byte at offset {nul}); not a workflow file", line)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            _fail(source, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
                          f"{exc.start}); not a workflow file", line)
    else:
        text = raw.removeprefix("\ufeff")
        nul = text.find("\x00")
        if nul >= 0:
            _fail(source, f"binary data (NUL character at offset {nul}); not a workflow file",
                  text.count("\n", 0, nul) + 1)
    if not text.strip():
        _fail(source, "the file is empty; a workflow needs at least 'version' and 'nodes'")
    return text


def load_text(text: str | bytes, source: str, fmt: str | None = None) -> LoadedDocument:
    """Parse YAML or JSON (by `fmt`, else by `source`'s extension, else both tried)."""
    body = decode(text, source)
    fmt = fmt or format_for(source)
    if fmt == "json":
        doc = _load_json(body, source)
    elif fmt == "yaml":
        doc = _load_yaml(body, source)
    else:
        first, second = ((_load_json, _load_yaml) if body.lstrip()[:1] in "{["
                         else (_load_yaml, _load_json))
        doc = _either(body, source, first, second)
    if not isinstance(doc.data, dict):
        kind = _kind(doc.data)
        _fail(source, f"the document is {kind}, not a mapping; a workflow is a mapping with "
                      "'version' and 'nodes'", *(doc.locate(()) or (None, None)))
    return doc


def _either(body: str, source: str, first: Callable[[str, str], LoadedDocument],
            second: Callable[[str, str], LoadedDocument]) -> LoadedDocument:
    try:
        return first(body, source)
    except WorkflowInvalid as exc_first:
        try:
            return second(body, source)
        except WorkflowInvalid:
            raise exc_first from None


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a plain string"
    return f"a {type(value).__name__}"


def _load_yaml(body: str, source: str) -> LoadedDocument:
    located = compose_yaml(body, YamlLimits(MAX_DEPTH, MAX_NODES))
    if located.error is not None:
        raise WorkflowInvalid(source, [located.error])
    return LoadedDocument(located.value, source, "yaml", located.positions,
                          located.problems)


def _load_json(body: str, source: str) -> LoadedDocument:
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                duplicates.append(key)
            out[key] = value
        return out

    try:
        data = json.loads(body, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        _fail(source, f"JSON syntax error: {exc.msg}", exc.lineno, exc.colno)
    except RecursionError:
        _fail(source, f"nesting is deeper than {MAX_DEPTH} levels")
    depth = _depth(data)
    if depth > MAX_DEPTH:
        _fail(source, f"nesting is deeper than {MAX_DEPTH} levels")
    # JSON is (nearly) YAML flow syntax: libyaml's events give us positions for free.
    positioned: Located = compose_yaml(body, YamlLimits(MAX_DEPTH, MAX_NODES))
    problems = [Problem("", f"duplicate key '{k}' (the last one wins)", severity="error")
                for k in duplicates]
    return LoadedDocument(data, source, "json",
                          positioned.positions if positioned.error is None else {}, problems)


def _depth(value: Any) -> int:
    """Container nesting depth, iteratively (the data may be deep)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            return level
        stack.extend((child, level + 1) for child in children)
    return deepest


def read_source(path: Path) -> bytes:
    """The bytes of a workflow file, refusing anything over `MAX_BYTES` before reading it."""
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            _fail(source, f"file is larger than the {MAX_BYTES // (1024 * 1024)} MB limit "
                          f"({size} bytes)")
        if path.is_dir():
            _fail(source, "is a directory, not a workflow file")
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        _fail(source, f"cannot read the workflow file: {exc.strerror or exc}")
    if len(raw) > MAX_BYTES:
        _fail(source, f"file is larger than the {MAX_BYTES // (1024 * 1024)} MB limit")
    return raw
