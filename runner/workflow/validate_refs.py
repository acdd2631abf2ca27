"""Static checks of `${{ }}` references and `if:` conditions: syntax everywhere, and what is
knowable before a run — secrets outside `run`, `env` and template inputs, matrix values in
nodes without a matrix, `inputs.*` outside templates or not declared, `tasks.X.outputs.Y` where
X is not upstream of the node, state keys absent from the schema, params absent from
`params.schema`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from runner.errors import ConditionError
from runner.workflow.conditions import parse as parse_condition
from runner.workflow.expressions import Expression, Reference, scan
from runner.workflow.graph import topological_order, upstream
from runner.workflow.spec import UNSUPPORTED_STEP_KINDS
from runner.workflow.validate_checks import Add, Facts, Path, as_dict, as_list, as_str, hint

# subtrees that hold no `${{ }}` Ferry resolves (ids, graph edges, foreign step configs, the
# schemas) and conditions (`if`, checked by their own grammar)
_SKIP = {"id", "depends_on", "type", "trigger", "retry", "if", "schema", "commit",
         "branch_name", "pull_request", *UNSUPPORTED_STEP_KINDS}
_MAX_DEPTH = 40


def strings(value: Any, where: Path, depth: int = 0) -> Iterator[tuple[Path, str]]:
    """Every string inside `value` with its path (keys and `_SKIP` subtrees excluded)."""
    if isinstance(value, str):
        yield where, value
    elif depth > _MAX_DEPTH:
        return
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in _SKIP:
                yield from strings(item, (*where, key), depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings(item, (*where, i), depth + 1)


@dataclass(frozen=True)
class _Use:
    """Something that reads references: a `${{ }}` expression or an `if:` condition."""

    label: str
    """How messages quote it: `'${{ x }}'` or `condition 'x'`."""
    references: tuple[Reference, ...]
    has_default: bool = False


def _of_expression(expr: Expression) -> _Use:
    return _Use(f"'{expr.source}'", expr.references, expr.has_default)


def _expressions(owner: dict[str, Any], where: Path, add: Add) -> list[tuple[Path, _Use]]:
    found: list[tuple[Path, _Use]] = []
    for path, text in strings(owner, where):
        if "${{" not in text:
            continue
        exprs, error = scan(text)
        if error is not None:
            add(path, error)
        found.extend((path, _of_expression(e)) for e in exprs)
    return found + _conditions(owner, where, add)


def _conditions(owner: dict[str, Any], where: Path, add: Add) -> list[tuple[Path, _Use]]:
    """The `if:` of each step of a node or template: parsed (errors reported), as uses."""
    found: list[tuple[Path, _Use]] = []
    for j, step in enumerate(as_list(owner.get("steps"))):
        text = as_dict(step).get("if")
        if isinstance(text, bool) or text is None:
            continue
        path: Path = (*where, "steps", j, "if")
        if not isinstance(text, str):
            continue  # the schema check reports the type
        try:
            condition = parse_condition(text)
        except ConditionError as exc:
            add(path, f"condition '{text}': {exc.reason}")
            continue
        found.append((path, _Use(f"condition '{text}'", tuple(condition.references()))))
    return found


class _Upstream:
    """Ancestor sets as bitsets over a topological order: one pass, O(edges x nodes/64)."""

    def __init__(self, facts: Facts) -> None:
        self.facts = facts
        self.bits: dict[str, int] | None = None
        self.ancestors: dict[str, int] = {}

    def _build(self) -> dict[str, int]:
        ids = self.facts.node_ids
        bits = {node: 1 << i for i, node in enumerate(ids)}
        for node in topological_order(ids, self.facts.deps):
            mask = 0
            for dep in self.facts.deps.get(node, ()):
                mask |= bits[dep] | self.ancestors.get(dep, 0)
            self.ancestors[node] = mask
        return bits

    def contains(self, node_id: str, other: str) -> bool:
        """Whether `other` is upstream of `node_id` (directly or transitively)."""
        if self.bits is None:
            self.bits = self._build()
        if node_id not in self.ancestors:  # on or behind a cycle: walk the graph
            return other in upstream(node_id, self.facts.deps)
        return bool(self.ancestors[node_id] & self.bits.get(other, 0))


def check_references(data: dict[str, Any], facts: Facts, add: Add) -> None:
    """Report malformed expressions and conditions, and references that cannot resolve in any
    run."""
    ups = _Upstream(facts)
    template_uses: dict[str, list[tuple[Path, _Use]]] = {}
    template_inputs: dict[str, set[str]] = {}
    for t, tpl in enumerate(as_list(data.get("templates"))):
        if not isinstance(tpl, dict):
            continue
        uses = _expressions(tpl, ("templates", t), add)
        tpl_id = as_str(tpl.get("id"))
        declared = {d for d in (as_str(as_dict(i).get("name"))
                                for i in as_list(tpl.get("inputs"))) if d}
        if tpl_id is not None and facts.templates.get(tpl_id) is tpl:
            template_uses[tpl_id] = uses
            template_inputs[tpl_id] = declared
        for path, use in uses:
            _check_secret_use(path, use, add)
            if use.has_default:
                continue
            for ref in use.references:
                if ref.namespace == "inputs" and ref.head not in declared:
                    add(path, f"{use.label}: template '{tpl_id}' declares no input "
                              f"'{ref.head}'{hint(ref.head, declared)}")
                elif ref.namespace == "state":
                    _check_state_ref(path, use, ref.head, facts, add)
                elif ref.namespace == "params":
                    _check_param_ref(path, use, ref.head, facts, add, declared)
    for i, node in enumerate(as_list(data.get("nodes"))):
        if not isinstance(node, dict):
            continue
        node_id = as_str(node.get("id")) or ""
        where: Path = ("nodes", i)
        for path, use in _expressions(node, where, add):
            _check_secret_use(path, use, add)
            _check_node_use(path, use, node, node_id, facts, ups, add, template=None)
        for j, step in enumerate(as_list(node.get("steps"))):
            tpl_id = as_str(as_dict(as_dict(step).get("use")).get("template"))
            for _, use in template_uses.get(tpl_id or "", []):
                _check_node_use((*where, "steps", j, "use"), use, node, node_id, facts, ups,
                                add, template=tpl_id)


def _secret_allowed(path: Path) -> bool:
    """`run`, `env` (node, template, step) and template inputs (given or defaults)."""
    if len(path) > 2 and path[2] in ("env", "inputs"):
        return True
    if len(path) > 4 and path[2] == "steps":
        return path[4] in ("run", "env") or (path[4] == "use" and len(path) > 5
                                              and path[5] == "inputs")
    return False


def _check_secret_use(path: Path, use: _Use, add: Add) -> None:
    """A secret anywhere else (a name, a condition, a matrix value, a runtime option) would be
    shown in status lines, the run document or the container's config."""
    if any(ref.namespace == "secrets" for ref in use.references) and not _secret_allowed(path):
        add(path, f"{use.label}: secrets may only be used in run, env and template inputs")


def _check_state_ref(path: Path, use: _Use, key: str, facts: Facts, add: Add) -> None:
    schema = facts.state_schema
    if schema and key not in schema and not use.has_default:
        add(path, f"{use.label}: state key '{key}' is not declared in state.schema"
                  + hint(key, schema), "warning")


def _check_param_ref(path: Path, use: _Use, key: str, facts: Facts, add: Add,
                     inputs: set[str] | None = None) -> None:
    """With a `params.schema`, a run only has the declared params (and, in a template, its
    inputs): any other `params.x` can never resolve."""
    if facts.params is None or use.has_default or key in facts.params or key in (inputs or ()):
        return
    add(path, f"{use.label}: param '{key}' is not declared in params.schema"
              + hint(key, [*facts.params, *(inputs or ())]))


def _check_node_use(path: Path, use: _Use, node: dict[str, Any], node_id: str,
                    facts: Facts, ups: _Upstream, add: Add, template: str | None) -> None:
    via = f" (in template '{template}')" if template else ""
    if use.has_default:
        return
    for ref in use.references:
        if ref.namespace == "matrix":
            problem = _matrix_problem(ref.head, node, facts)
            if problem:
                add(path, f"{use.label}{via}: {problem}")
        elif ref.namespace == "inputs" and template is None:
            add(path, f"{use.label}: 'inputs' only exist inside a template")
        elif ref.namespace == "tasks":
            other = ref.head
            if other not in facts.node_index:
                add(path, f"{use.label}{via}: node '{other}' does not exist"
                          + hint(other, facts.node_ids))
            elif other == node_id:
                add(path, f"{use.label}{via}: a node cannot read its own outputs")
            elif node_id in facts.deps and not ups.contains(node_id, other):
                add(path, f"{use.label}{via}: node '{other}' is not upstream of "
                          f"'{node_id}' (add it to depends_on)")
        elif ref.namespace == "state" and template is None:
            _check_state_ref(path, use, ref.head, facts, add)
        elif ref.namespace == "params" and template is None:
            _check_param_ref(path, use, ref.head, facts, add)


def _matrix_problem(key: str, node: dict[str, Any], facts: Facts) -> str | None:
    strategy = node.get("strategy")
    if not isinstance(strategy, dict):
        return (f"'{key}' is read as a matrix value, but node '{node.get('id')}' has no matrix "
                f"strategy (did you mean params.{key} or env.{key}?)")
    values = strategy.get("values")
    if isinstance(values, list):
        keys = {k for item in values if isinstance(item, dict) for k in item}
        if keys and key not in keys:
            return f"no matrix value of this node has the key '{key}'{hint(key, keys)}"
        return None
    source = strategy.get("from_state")
    if isinstance(source, str) and facts.state_schema:
        entry = facts.state_schema.get(source, {})
        props = as_dict(as_dict(entry.get("items")).get("properties"))
        if props and key not in props:
            return (f"the items of state '{source}' declare no property '{key}'"
                    + hint(key, props))
    return None
