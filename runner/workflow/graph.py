"""The dependency graph of a workflow: cycles, upstream sets, order, and DOT/Mermaid drawings.

Edges point from a node to the nodes it depends on (`a → b` means a depends on b), the way
Butterflow writes cycles. Everything is linear in nodes + edges and deterministic (declaration
order).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.workflow.model import Node, Workflow

Deps = Mapping[str, Sequence[str]]


def find_cycles(order: Sequence[str], deps: Deps) -> list[list[str]]:
    """One cycle per strongly connected component, as `[a, b, c, a]`, in declaration order.

    Each cycle starts at the component's first-declared node and is the shortest way back to it
    along depends_on edges (ties broken by declaration order), so the output is deterministic.
    """
    index_of = {node: i for i, node in enumerate(order)}
    components = _strongly_connected(order, deps, index_of)
    cycles: list[list[str]] = []
    for component in components:
        members = set(component)
        start = min(component, key=index_of.__getitem__)
        if len(component) == 1 and start not in deps.get(start, ()):
            continue
        cycles.append(_shortest_cycle(start, members, deps))
    cycles.sort(key=lambda c: index_of[c[0]])
    return cycles


def _strongly_connected(order: Sequence[str], deps: Deps,
                        index_of: Mapping[str, int]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (a long chain must not hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for root in order:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child_i = work.pop()
            if child_i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = [d for d in deps.get(node, ()) if d in index_of]
            recurse = False
            while child_i < len(children):
                child = children[child_i]
                child_i += 1
                if child not in index:
                    work.append((node, child_i))
                    work.append((child, 0))
                    recurse = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if recurse:
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                result.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return result


def _shortest_cycle(start: str, members: set[str], deps: Deps) -> list[str]:
    parent: dict[str, str] = {}
    queue: deque[str] = deque([start])
    seen = {start}
    while queue:
        node = queue.popleft()
        for dep in deps.get(node, ()):
            if dep not in members:
                continue
            if dep == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [start, *reversed(path[:-1]), start] if node != start else [start, start]
            if dep not in seen:
                seen.add(dep)
                parent[dep] = node
                queue.append(dep)
    return [start, start]  # unreachable for a real cycle


def upstream(node: str, deps: Deps) -> set[str]:
    """Every node `node` depends on, directly or transitively."""
    seen: set[str] = set()
    todo = list(deps.get(node, ()))
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(deps.get(current, ()))
    return seen


def topological_order(order: Sequence[str], deps: Deps) -> list[str]:
    """Nodes with their dependencies first (Kahn, stable by declaration order); acyclic input."""
    known = set(order)
    remaining = {n: len([d for d in deps.get(n, ()) if d in known]) for n in order}
    dependents: dict[str, list[str]] = {n: [] for n in order}
    for node in order:
        for dep in deps.get(node, ()):
            if dep in known:
                dependents[dep].append(node)
    ready = deque(n for n in order if remaining[n] == 0)
    out: list[str] = []
    while ready:
        node = ready.popleft()
        out.append(node)
        for child in dependents[node]:
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
    return out


def _label(node: Node) -> str:
    lines = [node.display_name]
    if node.display_name != node.id:
        lines.append(f"({node.id})")
    if node.strategy is not None:
        if node.strategy.from_state:
            lines.append(f"matrix: state.{node.strategy.from_state}")
        else:
            count = len(node.strategy.values or [])
            lines.append(f"matrix: {count} item{'' if count == 1 else 's'}")
    if node.type.value == "manual":
        lines.append("manual node")
    elif node.is_manual:
        lines.append("manual trigger")
    return "\n".join(lines)


def _dot_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def to_dot(workflow: Workflow) -> str:
    """Graphviz DOT: edges run from a dependency to its dependent (execution order).

    Manual nodes are octagons, manual triggers are dashed, matrix nodes are stacked boxes.
    """
    title = workflow.name or "workflow"
    out = [f"digraph {_dot_quote(title)} {{", "  rankdir=LR;",
           '  node [shape=box, style="rounded", fontname="Helvetica"];']
    for node in workflow.nodes:
        attrs = [f"label={_dot_quote(_label(node))}"]
        if node.type.value == "manual":
            attrs += ["shape=octagon", 'style="bold"', 'color="orange"']
        elif node.is_manual:
            attrs += ['style="rounded,dashed,bold"', 'color="orange"']
        if node.is_matrix:
            attrs += ["peripheries=2"]
            if node.type.value != "manual":
                attrs += ["shape=box3d"]
        out.append(f"  {_dot_quote(node.id)} [{', '.join(attrs)}];")
    for node in workflow.nodes:
        for dep in node.depends_on:
            out.append(f"  {_dot_quote(dep)} -> {_dot_quote(node.id)};")
    out.append("}")
    return "\n".join(out) + "\n"


def _mermaid_id(index: int) -> str:
    return f"n{index}"


def to_mermaid(workflow: Workflow) -> str:
    """Mermaid flowchart: `{{ }}` hexagons for manual nodes, `[[ ]]` for matrix nodes."""
    ids = {node.id: _mermaid_id(i) for i, node in enumerate(workflow.nodes)}
    out = ["flowchart LR"]
    for node in workflow.nodes:
        label = _label(node).replace('"', "#quot;").replace("\n", "<br/>")
        if node.type.value == "manual":
            shape = f'{{{{"{label}"}}}}'
        elif node.is_matrix:
            shape = f'[["{label}"]]'
        elif node.is_manual:
            shape = f'(["{label}"])'
        else:
            shape = f'["{label}"]'
        out.append(f"  {ids[node.id]}{shape}")
    for node in workflow.nodes:
        for dep in node.depends_on:
            if dep in ids:
                out.append(f"  {ids[dep]} --> {ids[node.id]}")
    manual = [ids[n.id] for n in workflow.nodes if n.is_manual]
    if manual:
        out.append("  classDef manual stroke:#f80,stroke-width:2px,stroke-dasharray:4")
        out.append(f"  class {','.join(manual)} manual")
    return "\n".join(out) + "\n"
