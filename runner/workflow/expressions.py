"""`${{ ... }}` expressions: find them in a string, parse their references, resolve them.

Grammar (spaces allowed anywhere between tokens):
    expression  := alternative ( "||" alternative )*
    alternative := reference | literal
    reference   := name path*                        (bare name: a matrix value)
                 | "matrix" "." name path*
                 | ("params" | "env" | "inputs" | "state" | "secrets") "." name path*
                 | "tasks" "." node "." "outputs" "." name path*
    path        := "." name | "[" integer "]" | "[" quoted-string "]"
    literal     := 'single' | "double" | number | true | false | null

The first alternative that resolves wins; a literal always resolves, so `|| 'x'` is a default.
Strings substitute plain, every other value as compact JSON. `secrets.NAME` reads the run's
secrets (masked wherever output goes: `runner.secrets`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.errors import ExpressionError

_OPEN = "${{"
_CLOSE = "}}"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_INDEX = re.compile(r"\[\s*(?:(-?[0-9]+)|'([^']*)'|\"([^\"]*)\")\s*\]")
_MISSING = object()
NAMESPACES = ("params", "env", "inputs", "state", "matrix", "secrets")
"""The namespaces a reference may start with (besides `tasks` and a bare matrix key)."""

PathItem = str | int


class _Malformed(ValueError):
    """Internal: a syntax error, turned into ExpressionError (with its `where`) by `find`."""

    def __init__(self, expression: str, message: str) -> None:
        super().__init__(message)
        self.expression = expression
        self.message = message


@dataclass(frozen=True)
class Reference:
    """A name an expression looks up: its namespace and the path inside it.

    `tasks.<node>.outputs.<name>` has path `(node, name, ...)`; a bare `${{region}}` is
    namespace `matrix` with path `("region",)`.
    """

    namespace: str
    path: tuple[PathItem, ...]

    @property
    def head(self) -> str:
        """The first path element as text (the key looked up in the namespace)."""
        return str(self.path[0]) if self.path else ""

    def dotted(self) -> str:
        """The reference written back in canonical `${{ }}` form (without the braces)."""
        if self.namespace == "tasks":
            rest = self.path[2:]
            base = f"tasks.{self.path[0]}.outputs.{self.path[1]}"
            return base + _render_path(rest)
        first, rest = self.path[0], self.path[1:]
        return f"{self.namespace}.{first}{_render_path(rest)}"


@dataclass(frozen=True)
class Literal:
    """A constant alternative (`'fallback'`, `3`, `true`, `null`)."""

    value: Any


@dataclass(frozen=True)
class Expression:
    """One `${{ ... }}` occurrence in a string: position, source text and parsed alternatives."""

    start: int
    end: int
    source: str
    alternatives: tuple[Reference | Literal, ...]

    @property
    def text(self) -> str:
        """The text between `${{` and `}}`, stripped."""
        return self.source[len(_OPEN):-len(_CLOSE)].strip()

    @property
    def ref(self) -> Reference:
        """The first reference of the expression (every expression has at least one)."""
        return self.references[0]

    @property
    def references(self) -> tuple[Reference, ...]:
        """Every reference among the alternatives, in order."""
        return tuple(a for a in self.alternatives if isinstance(a, Reference))

    @property
    def has_default(self) -> bool:
        """A literal alternative makes the expression always resolvable."""
        return any(isinstance(a, Literal) for a in self.alternatives)


@dataclass(frozen=True)
class Context:
    """Everything an expression may look up; `tasks` maps node id -> that node's outputs."""

    matrix: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, Any] = field(default_factory=dict)
    state: Mapping[str, Any] = field(default_factory=dict)
    tasks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)


def _render_path(path: Sequence[PathItem]) -> str:
    out = []
    for item in path:
        if isinstance(item, int):
            out.append(f"[{item}]")
        elif _NAME.fullmatch(item):
            out.append(f".{item}")
        else:
            out.append(f"[{json.dumps(item)}]")
    return "".join(out)


def contains(text: str) -> bool:
    """Whether `text` has anything that looks like an expression (cheap pre-check)."""
    return _OPEN in text


def find(text: str, where: str = "") -> list[Expression]:
    """Every `${{ ... }}` in `text`, in order; ExpressionError on a malformed one."""
    try:
        return _find(text)
    except _Malformed as exc:
        raise ExpressionError(exc.expression, exc.message, where) from None


def scan(text: str) -> tuple[list[Expression], str | None]:
    """The validator's helper: the expressions in `text` and a syntax error message, if any.

    Unlike `find` it never raises: expressions before a malformed one are still returned.
    """
    found: list[Expression] = []
    try:
        _find(text, found)
    except _Malformed as exc:
        return found, f"malformed expression '{_OPEN} {exc.expression} {_CLOSE}': {exc.message}"
    return found, None


def _find(text: str, found: list[Expression] | None = None) -> list[Expression]:
    found = [] if found is None else found
    pos = 0
    while True:
        start = text.find(_OPEN, pos)
        if start < 0:
            return found
        close = _find_close(text, start + len(_OPEN))
        if close < 0:
            snippet = text[start + len(_OPEN):start + 40].strip()
            reason = "unterminated quoted string" if close == -2 else "'${{' is never closed"
            raise _Malformed(snippet, f"{reason} (expected '}}}}')")
        end = close + len(_CLOSE)
        source = text[start:end]
        inner = text[start + len(_OPEN):close]
        found.append(Expression(start, end, source, _parse(inner)))
        pos = end


def _find_close(text: str, pos: int) -> int:
    """Index of the `}}` closing an expression, skipping quoted strings."""
    quote: str | None = None
    i = pos
    n = len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "}" and text.startswith(_CLOSE, i):
            return i
        elif ch == "\n" or text.startswith(_OPEN, i):
            return -1  # an expression never spans lines nor nests
        i += 1
    return -2 if quote else -1


def _split_alternatives(inner: str) -> list[str]:
    parts: list[str] = []
    quote: str | None = None
    buf_start = 0
    i = 0
    while i < len(inner):
        ch = inner[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif inner.startswith("||", i):
            parts.append(inner[buf_start:i])
            i += 2
            buf_start = i
            continue
        i += 1
    if quote:
        raise _Malformed(inner.strip(), "unterminated quoted string")
    parts.append(inner[buf_start:])
    return parts


def _parse(inner: str) -> tuple[Reference | Literal, ...]:
    if not inner.strip():
        raise _Malformed("", "empty expression")
    alternatives: list[Reference | Literal] = []
    for part in _split_alternatives(inner):
        alternatives.append(_parse_alternative(part.strip(), inner.strip()))
    if not any(isinstance(a, Reference) for a in alternatives):
        raise _Malformed(inner.strip(), "an expression must reference something")
    return tuple(alternatives)


def _parse_alternative(part: str, whole: str) -> Reference | Literal:
    if not part:
        raise _Malformed(whole, "empty alternative around '||'")
    if part[0] in "'\"":
        if len(part) < 2 or part[-1] != part[0] or part[0] in part[1:-1]:
            raise _Malformed(whole, f"malformed string literal {part}")
        return Literal(part[1:-1])
    if part in ("true", "false", "null"):
        return Literal({"true": True, "false": False, "null": None}[part])
    if _NUMBER.fullmatch(part):
        return Literal(json.loads(part))
    return _parse_reference(part, whole)


def _parse_path(text: str, whole: str) -> tuple[PathItem, ...]:
    """`a.b[0]["c d"]` -> ("a", "b", 0, "c d")."""
    items: list[PathItem] = []
    i = 0
    expect_name = True
    while i < len(text):
        if expect_name:
            m = _NAME.match(text, i)
            if not m:
                raise _Malformed(whole, f"expected a name at '{text[i:] or text}'")
            items.append(m.group(0))
            i = m.end()
            expect_name = False
            continue
        ch = text[i]
        if ch == ".":
            i += 1
            expect_name = True
            if i >= len(text):
                raise _Malformed(whole, "a path cannot end with '.'")
            continue
        m = _INDEX.match(text, i)
        if not m:
            raise _Malformed(whole, f"unexpected '{text[i:]}'")
        if m.group(1) is not None:
            items.append(int(m.group(1)))
        else:
            items.append(m.group(2) if m.group(2) is not None else m.group(3))
        i = m.end()
    if not items:
        raise _Malformed(whole, "empty reference")
    return tuple(items)


def parse_reference(text: str) -> Reference:
    """Parse one reference such as `params.x`, `state.a.b[0]` or `tasks.n.outputs.o`."""
    try:
        return _parse_reference(text, text)
    except _Malformed as exc:
        raise ExpressionError(exc.expression, exc.message) from None


def _parse_reference(text: str, whole: str | None = None) -> Reference:
    whole = whole if whole is not None else text
    path = _parse_path(text.strip(), whole)
    head = path[0]
    if head in NAMESPACES:
        if len(path) < 2:
            raise _Malformed(whole, f"'{head}' needs a name: {head}.<name>")
        if not isinstance(path[1], str):
            raise _Malformed(whole, f"'{head}' must be followed by a name")
        return Reference(str(head), path[1:])
    if head == "steps" and len(path) >= 3 and path[2] == "outputs":
        raise _Malformed(whole, "step outputs do not exist (neither in Butterflow): write task "
                                "outputs to $TASK_OUTPUTS and read tasks.<node>.outputs.<name>")
    if head == "tasks":
        if (len(path) < 4 or path[2] != "outputs" or not isinstance(path[1], str)
                or not isinstance(path[3], str)):
            raise _Malformed(whole, "task outputs are written tasks.<node>.outputs.<name>")
        return Reference("tasks", (path[1], path[3], *path[4:]))
    return Reference("matrix", path)


def lookup(ref: Reference, ctx: Context) -> Any:
    """The value `ref` names in `ctx`; raises KeyError when it is not there."""
    if ref.namespace == "tasks":
        node, name, *rest = ref.path
        outputs = ctx.tasks.get(str(node))
        if outputs is None:
            raise KeyError(f"no outputs from task '{node}'")
        return _walk(outputs, [name, *rest], ref)
    scope: Mapping[str, Any] = getattr(ctx, ref.namespace)
    return _walk(scope, list(ref.path), ref)


def _walk(value: Any, path: Sequence[PathItem], ref: Reference) -> Any:
    for item in path:
        if isinstance(item, int) and isinstance(value, Sequence) and not isinstance(value, str):
            if -len(value) <= item < len(value):
                value = value[item]
                continue
            raise KeyError(f"index {item} is out of range")
        if isinstance(value, Mapping) and str(item) in value:
            value = value[str(item)]
            continue
        raise KeyError(f"'{ref.dotted()}' is not set")
    return value


def render(value: Any) -> str:
    """A resolved value as text: strings plain, everything else compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def evaluate(expr: Expression, ctx: Context, where: str = "") -> Any:
    """The value of one expression: the first alternative that resolves."""
    reasons: list[str] = []
    for alt in expr.alternatives:
        if isinstance(alt, Literal):
            return alt.value
        try:
            return lookup(alt, ctx)
        except KeyError as exc:
            reasons.append(str(exc.args[0]) if exc.args else alt.dotted())
    raise ExpressionError(expr.text, "; ".join(reasons) or "not set", where)


def resolve(text: str, ctx: Context, where: str = "") -> str:
    """`text` with every `${{ ... }}` replaced by its value; ExpressionError if one is unset."""
    if _OPEN not in text:
        return text
    expressions = find(text, where)
    out: list[str] = []
    pos = 0
    for expr in expressions:
        out.append(text[pos:expr.start])
        out.append(render(evaluate(expr, ctx, where)))
        pos = expr.end
    out.append(text[pos:])
    return "".join(out)


def resolve_value(value: Any, ctx: Context, where: str = "") -> Any:
    """Resolve expressions in every string inside a JSON-like value (lists, dicts)."""
    if isinstance(value, str):
        return resolve(value, ctx, where)
    if isinstance(value, Mapping):
        return {k: resolve_value(v, ctx, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_value(v, ctx, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def references(text: str, where: str = "") -> list[Reference]:
    """Every reference in `text` (the validator's helper); ExpressionError if malformed."""
    if _OPEN not in text:
        return []
    return [ref for expr in find(text, where) for ref in expr.references]

