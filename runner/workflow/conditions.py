"""Step conditions (`if:`): parse them once, evaluate them against an expression context.

Grammar (upstream Butterflow's operators; spaces allowed between tokens):
    condition := or                         (or the whole text wrapped in one `${{ ... }}`)
    or        := and ( "||" and )*
    and       := not ( "&&" not )*
    not       := "!" not | compare
    compare   := operand ( ("==" | "!=" | "<" | "<=" | ">" | ">=") operand )?
    operand   := "(" or ")" | literal | reference
    literal   := "double" | 'single' | number | true | false | null
    reference := the references of `${{ }}`: params.x, state.a.b[0], matrix.x (or a bare
                 matrix key), env.X, inputs.x (templates), tasks.<node>.outputs.x

Semantics, as upstream where upstream is clear: a string that reads as a number is that number
(params are text: `params.n > 2` compares numbers); a value is true unless it is false, null,
0, "" or "false" (arrays and objects are true). Where upstream is silently surprising, Ferry
says so instead: a reference that is not set, a comparison of a string with a number, or text
that is not a condition is a `ConditionError` (the task fails naming the condition), never a
skipped step; `state.ready || false` asks "set and true" (as `${{ a || 'x' }}` gives a default,
an unset reference on the left of `||` gives way to the right side). Numbers compare
numerically (`1 == 1.0`); a number equals a string that reads as the same number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from runner.errors import ConditionError, ExpressionError
from runner.workflow.expressions import Context, Reference, lookup, parse_reference

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<op>==|!=|<=|>=|&&|\|\||[<>!()])
    | (?P<dq>"(?:[^"\\]|\\.)*")
    | (?P<sq>'[^']*')
    | (?P<num>-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?![A-Za-z_]))
    | (?P<ref>[A-Za-z_][A-Za-z0-9_-]*
        (?:\.[A-Za-z_][A-Za-z0-9_-]*|\[\s*(?:-?\d+|'[^']*'|"[^"]*")\s*\])*)
    )""", re.VERBOSE)
_NUMBER_TEXT = re.compile(r"^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$")
_KEYWORDS = {"true": True, "false": False, "null": None}
_COMPARE = ("==", "!=", "<", "<=", ">", ">=")


@dataclass(frozen=True)
class Lit:
    """A constant."""

    value: Any


@dataclass(frozen=True)
class Ref:
    """A name looked up in the context."""

    ref: Reference


@dataclass(frozen=True)
class Not:
    """`!x`."""

    operand: Node


@dataclass(frozen=True)
class Binary:
    """`a && b`, `a || b` or a comparison."""

    op: str
    left: Node
    right: Node


Node = Lit | Ref | Not | Binary


@dataclass(frozen=True)
class Condition:
    """A parsed `if:`: its text and its tree."""

    text: str
    tree: Node

    def references(self) -> list[Reference]:
        """Every reference in the condition, in order."""
        out: list[Reference] = []
        todo: list[Node] = [self.tree]
        while todo:
            node = todo.pop(0)
            if isinstance(node, Ref):
                out.append(node.ref)
            elif isinstance(node, Not):
                todo.insert(0, node.operand)
            elif isinstance(node, Binary):
                todo[0:0] = [node.left, node.right]
        return out


def _unwrap(text: str) -> str:
    """The condition inside one `${{ ... }}` wrapping the whole text; `ConditionError` when
    `${{ }}` is mixed with other text (upstream then skips the step without a word)."""
    stripped = text.strip()
    if "${{" not in stripped:
        return stripped
    if (stripped.startswith("${{") and stripped.endswith("}}")
            and stripped.count("${{") == 1):
        return stripped[3:-2].strip()
    raise ConditionError(text, "a condition is an expression: write it without '${{ }}' (e.g. "
                               "params.env == \"prod\") or wrap the whole of it in one '${{ }}'")


def parse(text: str) -> Condition:
    """Parse a condition; `ConditionError` naming what is wrong."""
    inner = _unwrap(text)
    if not inner:
        raise ConditionError(text, "the condition is empty")
    tokens = _tokenize(inner, text)
    parser = _Parser(tokens, text)
    tree = parser.parse_or()
    if parser.pos < len(tokens):
        raise ConditionError(text, f"unexpected '{tokens[parser.pos][1]}'")
    return Condition(text, tree)


def _tokenize(inner: str, text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(inner):
        if inner[pos:].strip() == "":
            break
        m = _TOKEN.match(inner, pos)
        if not m or m.end() == pos:
            rest = inner[pos:].strip()
            why = ("single '=' is not a comparison (use '==')" if rest.startswith("=")
                   else f"unexpected '{rest[:20]}'")
            raise ConditionError(text, why)
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take_op(self, *ops: str) -> str | None:
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] in ops:
            self.pos += 1
            return tok[1]
        return None

    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.take_op("||"):
            node = Binary("||", node, self.parse_and())
        return node

    def parse_and(self) -> Node:
        node = self.parse_not()
        while self.take_op("&&"):
            node = Binary("&&", node, self.parse_not())
        return node

    def parse_not(self) -> Node:
        if self.take_op("!"):
            return Not(self.parse_not())
        left = self.parse_operand()
        op = self.take_op(*_COMPARE)
        if op is None:
            return left
        right = self.parse_operand()
        if self.take_op(*_COMPARE):
            raise ConditionError(self.text, "chained comparisons need parentheses or '&&'")
        return Binary(op, left, right)

    def parse_operand(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise ConditionError(self.text, "the condition ends where a value was expected")
        kind, value = tok
        self.pos += 1
        if kind == "op" and value == "(":
            node = self.parse_or()
            if not self.take_op(")"):
                raise ConditionError(self.text, "'(' is never closed")
            return node
        if kind == "dq":
            return Lit(re.sub(r"\\(.)", r"\1", value[1:-1]))
        if kind == "sq":
            return Lit(value[1:-1])
        if kind == "num":
            return Lit(_number(value))
        if kind == "ref":
            if value in _KEYWORDS:
                return Lit(_KEYWORDS[value])
            try:
                return Ref(parse_reference(value))
            except ExpressionError as exc:
                raise ConditionError(self.text, str(exc)) from None
        raise ConditionError(self.text, f"unexpected '{value}' where a value was expected")


def _number(text: str) -> int | float:
    value = float(text)
    if re.fullmatch(r"-?\d+", text.strip()):
        return int(text)
    return value


def _value(raw: Any) -> Any:
    """A looked-up value as conditions see it: a string that reads as a number is that number."""
    if isinstance(raw, str) and _NUMBER_TEXT.match(raw):
        return _number(raw.strip().lstrip("+"))
    return raw


def truthy(value: Any) -> bool:
    """Upstream's truthiness: false, null, 0, "" and "false" are false; anything else is true
    (a looked-up "0" is the number 0, a literal '0' is a non-empty string)."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, str):
        return value not in ("", "false")
    return True


def evaluate(condition: Condition, ctx: Context) -> bool:
    """Whether the step runs; `ConditionError` when the condition cannot be evaluated."""
    return truthy(_eval(condition.tree, ctx, condition.text))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Missing(ConditionError):
    """A reference that is not set (`||` falls through to its right side on it)."""


def _eval(node: Node, ctx: Context, text: str) -> Any:
    if isinstance(node, Lit):
        return node.value
    if isinstance(node, Ref):
        try:
            return _value(lookup(node.ref, ctx))
        except KeyError as exc:
            why = str(exc.args[0]) if exc.args else f"'{node.ref.dotted()}' is not set"
            raise _Missing(text, why) from None
    if isinstance(node, Not):
        return not truthy(_eval(node.operand, ctx, text))
    if node.op == "&&":
        return truthy(_eval(node.left, ctx, text)) and truthy(_eval(node.right, ctx, text))
    if node.op == "||":
        # as in `${{ a || 'default' }}`: a reference that is not set gives way to the right side
        try:
            left = truthy(_eval(node.left, ctx, text))
        except _Missing:
            left = False
        return left or truthy(_eval(node.right, ctx, text))
    left, right = _eval(node.left, ctx, text), _eval(node.right, ctx, text)
    if _is_number(left) or _is_number(right):  # "2" against 2: the number
        left, right = _value(left), _value(right)
    if node.op in ("==", "!="):
        same = _equal(left, right)
        return same if node.op == "==" else not same
    if not ((_is_number(left) and _is_number(right))
            or (isinstance(left, str) and isinstance(right, str))):
        raise ConditionError(text, f"'{node.op}' compares numbers or strings, not "
                                   f"{_kind(left)} and {_kind(right)}")
    ops = {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}
    return ops[node.op]


def _equal(left: Any, right: Any) -> bool:
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    return bool(left == right)


def _kind(value: Any) -> str:
    from runner.workflow.values import kind_of

    return kind_of(value)
