"""Static checks of `${{ }}` references: syntax everywhere, and what is knowable before a run —
secrets outside `run`, `env` and template inputs, matrix values in nodes without a matrix,
`inputs.*` outside templates or not declared, `tasks.X.outputs.Y` where X is not upstream of the
node, state keys absent from the schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from runner.workflow.expressions import Expression, scan
from runner.workflow.graph import topological_order, upstream
from runner.workflow.validate_checks import Add, Facts, Path, as_dict, as_list, as_str, hint

# subtrees that hold no expressions Ferry resolves (ids, graph edges, foreign step configs)
_SKIP = {"id", "depends_on", "type", "trigger", "ast-grep", "js-ast-grep", "codemod", "retry"}
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


def _expressions(owner: dict[str, Any], where: Path, add: Add) -> list[tuple[Path, Expression]]:
    found: list[tuple[Path, Expression]] = []
    for path, text in strings(owner, where):
        if "${{" not in text:
            continue
        exprs, error = scan(text)
        if error is not None:
            add(path, error)
        found.extend((path, e) for e in exprs)
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
    """Report malformed expressions and references that cannot resolve in any run."""
    ups = _Upstream(facts)
    template_exprs: dict[str, list[tuple[Path, Expression]]] = {}
    for t, tpl in enumerate(as_list(data.get("templates"))):
        if not isinstance(tpl, dict):
            continue
        exprs = _expressions(tpl, ("templates", t), add)
        tpl_id = as_str(tpl.get("id"))
        if tpl_id is not None and facts.templates.get(tpl_id) is tpl:
            template_exprs[tpl_id] = exprs
        declared = {as_str(as_dict(i).get("name")) for i in as_list(tpl.get("inputs"))}
        for path, expr in exprs:
            _check_secret_use(path, expr, add)
            for ref in expr.references:
                if ref.namespace == "inputs" and ref.head not in declared and not expr.has_default:
                    add(path, f"'{expr.source}': template '{tpl_id}' declares no input "
                              f"'{ref.head}'{hint(ref.head, [d for d in declared if d])}")
                elif ref.namespace == "state":
                    _check_state_ref(path, expr, ref.head, facts, add)
    for i, node in enumerate(as_list(data.get("nodes"))):
        if not isinstance(node, dict):
            continue
        node_id = as_str(node.get("id")) or ""
        where: Path = ("nodes", i)
        for path, expr in _expressions(node, where, add):
            _check_secret_use(path, expr, add)
            _check_node_expr(path, expr, node, node_id, facts, ups, add, template=None)
        for j, step in enumerate(as_list(node.get("steps"))):
            tpl_id = as_str(as_dict(as_dict(step).get("use")).get("template"))
            for _, expr in template_exprs.get(tpl_id or "", []):
                _check_node_expr((*where, "steps", j, "use"), expr, node, node_id, facts, ups,
                                 add, template=tpl_id)


def _secret_allowed(path: Path) -> bool:
    """`run`, `env` (node, template, step) and template inputs (given or defaults)."""
    if len(path) > 2 and path[2] in ("env", "inputs"):
        return True
    if len(path) > 4 and path[2] == "steps":
        return path[4] in ("run", "env") or (path[4] == "use" and len(path) > 5
                                              and path[5] == "inputs")
    return False


def _check_secret_use(path: Path, expr: Expression, add: Add) -> None:
    """A secret anywhere else (a name, a matrix value, a runtime option) would be shown in
    status lines, the run document or the container's config."""
    if any(ref.namespace == "secrets" for ref in expr.references) and not _secret_allowed(path):
        add(path, f"'{expr.source}': secrets may only be used in run, env and template inputs")


def _check_state_ref(path: Path, expr: Expression, key: str, facts: Facts, add: Add) -> None:
    schema = facts.state_schema
    if schema and key not in schema and not expr.has_default:
        add(path, f"'{expr.source}': state key '{key}' is not declared in state.schema"
                  + hint(key, schema), "warning")


def _check_node_expr(path: Path, expr: Expression, node: dict[str, Any], node_id: str,
                     facts: Facts, ups: _Upstream, add: Add, template: str | None) -> None:
    via = f" (in template '{template}')" if template else ""
    if expr.has_default:
        return
    for ref in expr.references:
        if ref.namespace == "matrix":
            problem = _matrix_problem(ref.head, node, facts)
            if problem:
                add(path, f"'{expr.source}'{via}: {problem}")
        elif ref.namespace == "inputs" and template is None:
            add(path, f"'{expr.source}': 'inputs' only exist inside a template")
        elif ref.namespace == "tasks":
            other = ref.head
            if other not in facts.node_index:
                add(path, f"'{expr.source}'{via}: node '{other}' does not exist"
                          + hint(other, facts.node_ids))
            elif other == node_id:
                add(path, f"'{expr.source}'{via}: a node cannot read its own outputs")
            elif node_id in facts.deps and not ups.contains(node_id, other):
                add(path, f"'{expr.source}'{via}: node '{other}' is not upstream of "
                          f"'{node_id}' (add it to depends_on)")
        elif ref.namespace == "state" and template is None:
            _check_state_ref(path, expr, ref.head, facts, add)


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
