"""Compose a YAML document from libyaml's event stream into plain values with their positions.

Why not `yaml.safe_load`: it gives no positions, copies aliases (an alias bomb expands to
gigabytes), and the C composer recurses (a deeply nested document crashes the interpreter).
Here the event loop is iterative, aliases are shared and their expanded size is counted, and the
depth and size limits stop the parse as soon as they are passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn

import yaml
from yaml import events as ev
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from runner.errors import Problem

PathKey = str | int

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_BINARY_TAG = "tag:yaml.org,2002:binary"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_MAP_TAGS = {None, "!", "tag:yaml.org,2002:map"}
_SEQ_TAGS = {None, "!", "tag:yaml.org,2002:seq"}
_NO_KEY = object()
_MERGE = object()


@dataclass(frozen=True)
class YamlLimits:
    """How deep and how large (after alias expansion) a document may be."""

    max_depth: int
    max_nodes: int


@dataclass
class Located:
    """The composed value, a path -> (line, column) map, non-fatal problems, or a fatal error."""

    value: Any = None
    positions: dict[tuple[PathKey, ...], tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    error: Problem | None = None


class _Stop(Exception):
    """Internal: a fatal problem that ends composition."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass
class _Frame:
    container: dict[str, Any] | list[Any]
    path: tuple[PathKey, ...]
    anchor: str | None
    start_count: int
    key: Any = _NO_KEY
    key_pos: tuple[int, int] = (0, 0)
    merges: list[Any] = field(default_factory=list)


def format_path(path: tuple[PathKey, ...]) -> str:
    """('nodes', 2, 'strategy') -> 'nodes[2].strategy'."""
    out: list[str] = []
    for item in path:
        if isinstance(item, int):
            out.append(f"[{item}]")
        else:
            out.append(f".{item}" if out else str(item))
    return "".join(out)


def _pos(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


class _Composer:
    def __init__(self, limits: YamlLimits) -> None:
        self.limits = limits
        self.resolver = Resolver()
        self.constructor = SafeConstructor()
        self.out = Located()
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.open_anchors: set[str] = set()
        self.count = 0
        self.documents = 0
        self.has_root = False

    def fail(self, message: str, mark: Any = None, path: tuple[PathKey, ...] = ()) -> NoReturn:
        line, column = _pos(mark) if mark is not None else (None, None)
        raise _Stop(Problem(format_path(path), message, line, column))

    def grow(self, amount: int, mark: Any) -> None:
        self.count += amount
        if self.count > self.limits.max_nodes:
            self.fail(f"the document expands to more than {self.limits.max_nodes} values "
                      "(YAML aliases nested too deep: an alias bomb?)", mark)

    def child_path(self, mark: Any) -> tuple[PathKey, ...]:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.container, list):
            return (*top.path, len(top.container))
        if top.key is _NO_KEY:
            self.fail("mapping keys must be plain scalars", mark, top.path)
        return (*top.path, top.key) if top.key is not _MERGE else top.path

    def scalar(self, event: Any) -> Any:
        tag = event.tag
        if tag in (None, "!"):
            tag = self.resolver.resolve(ScalarNode, event.value, event.implicit)
        if tag in (_TIMESTAMP_TAG, _BINARY_TAG):
            return event.value  # dates stay text: the workflow model is JSON
        if tag == _BOOL_TAG and event.value.lower() not in ("true", "false"):
            # YAML 1.2 (what Butterflow's parser reads): yes/no/on/off are strings, not booleans
            return event.value
        if tag == _MERGE_TAG:
            return _MERGE
        construct = self.constructor.yaml_constructors.get(tag)
        if construct is None or tag.startswith("!"):
            self.fail(f"unsupported YAML tag '{event.tag}'", event.start_mark)
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return construct(self.constructor, node)
        except (ConstructorError, ValueError) as exc:
            self.fail(f"bad value for tag '{tag}': {exc}", event.start_mark)

    def attach(self, value: Any, mark: Any, raw: str | None = None,
               record: bool = True) -> None:
        """Put a finished value (scalar, alias or closed container) into its parent."""
        if not self.stack:
            self.out.value = value
            self.out.positions.setdefault((), _pos(mark))
            self.has_root = True
            return
        top = self.stack[-1]
        if isinstance(top.container, list):
            if record:
                self.out.positions[(*top.path, len(top.container))] = _pos(mark)
            top.container.append(value)
            return
        if top.key is _NO_KEY:
            if value is _MERGE:
                top.key = _MERGE
            elif isinstance(value, dict | list):
                self.fail("mapping keys must be plain scalars", mark, top.path)
            else:
                top.key = value if isinstance(value, str) else (raw if raw is not None
                                                                 else str(value))
            top.key_pos = _pos(mark)
            return
        key, top.key = top.key, _NO_KEY
        if key is _MERGE:
            merged = value if isinstance(value, list) else [value]
            if not all(isinstance(m, dict) for m in merged):
                self.fail("'<<' merges a mapping or a list of mappings", mark, top.path)
            top.merges.extend(merged)
            return
        assert isinstance(top.container, dict)
        path = (*top.path, key)
        if key in top.container:
            first = self.out.positions.get(path)
            where = f" (first at line {first[0]})" if first else ""
            self.out.problems.append(Problem(
                format_path(path), f"duplicate key '{key}'{where}; the last one wins",
                *top.key_pos))
        top.container[key] = value
        self.out.positions[path] = top.key_pos

    def open(self, event: Any, container: dict[str, Any] | list[Any]) -> None:
        allowed = _MAP_TAGS if isinstance(container, dict) else _SEQ_TAGS
        if event.tag not in allowed:
            self.fail(f"unsupported YAML tag '{event.tag}'", event.start_mark)
        if len(self.stack) + 1 > self.limits.max_depth:
            self.fail(f"nesting is deeper than {self.limits.max_depth} levels",
                      event.start_mark)
        path = self.child_path(event.start_mark)
        if not self.stack or isinstance(self.stack[-1].container, list):
            self.out.positions[path] = _pos(event.start_mark)
        # under a mapping, attach() records the key's position when the value is complete
        self.grow(1, event.start_mark)
        if event.anchor:
            self.open_anchors.add(event.anchor)
        self.stack.append(_Frame(container, path, event.anchor, self.count))

    def close(self, event: Any) -> None:
        frame = self.stack.pop()
        if isinstance(frame.container, dict):
            for merged in frame.merges:
                for key, value in merged.items():
                    frame.container.setdefault(key, value)
        size = self.count - frame.start_count + 1
        if frame.anchor:
            self.open_anchors.discard(frame.anchor)
            self.anchors[frame.anchor] = (frame.container, size)
        self.attach(frame.container, event.start_mark, record=False)

    def feed(self, event: Any) -> None:
        if isinstance(event, ev.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                self.fail("the file holds more than one YAML document ('---'); a workflow "
                          "file holds exactly one", event.start_mark)
        elif isinstance(event, ev.ScalarEvent):
            value = self.scalar(event)
            self.grow(1, event.start_mark)
            if event.anchor:
                self.anchors[event.anchor] = (value, 1)
            self.attach(value, event.start_mark, event.value)
        elif isinstance(event, ev.AliasEvent):
            if event.anchor in self.open_anchors:
                self.fail(f"alias '*{event.anchor}' refers to its own enclosing anchor",
                          event.start_mark)
            anchored = self.anchors.get(event.anchor or "")
            if anchored is None:
                self.fail(f"alias '*{event.anchor}' has no anchor", event.start_mark)
            value, size = anchored
            self.grow(size, event.start_mark)
            self.attach(value, event.start_mark)
        elif isinstance(event, ev.MappingStartEvent):
            self.open(event, {})
        elif isinstance(event, ev.SequenceStartEvent):
            self.open(event, [])
        elif isinstance(event, ev.MappingEndEvent | ev.SequenceEndEvent):
            self.close(event)


def _syntax_problem(exc: yaml.YAMLError, text: str) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    if mark is None:
        return Problem("", message)
    index = getattr(mark, "index", None)
    if isinstance(index, int) and 0 <= index < len(text) and text[index] == "\t":
        message += "; tabs are not allowed for indentation in YAML, use spaces"
    return Problem("", message, mark.line + 1, mark.column + 1)


def compose_yaml(text: str, limits: YamlLimits) -> Located:
    """Compose one YAML document; `error` is set (and `value` meaningless) when it fails."""
    composer = _Composer(limits)
    try:
        for event in yaml.parse(text, Loader=_Loader):
            composer.feed(event)
    except _Stop as stop:
        composer.out.error = stop.problem
    except yaml.YAMLError as exc:
        composer.out.error = _syntax_problem(exc, text)
        if "nesting depth" in composer.out.error.message:
            # PyYAML >= 6.0.4's scanner looks ahead and stops at its own limit (1,000 levels)
            # before our composer sees the 65th level: say it in our words, at its place.
            error = composer.out.error
            composer.out.error = Problem(
                "", f"nesting is deeper than {limits.max_depth} levels", error.line, error.column)
    except RecursionError:
        composer.out.error = Problem("", f"nesting is deeper than {limits.max_depth} levels")
    if composer.out.error is None and not composer.has_root:
        composer.out.error = Problem("", "the file holds no YAML document")
    return composer.out
