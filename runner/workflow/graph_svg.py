"""The workflow graph as an SVG drawing, made here (no Graphviz, no script): nodes in columns
by their depth in the DAG (dependencies to the left), ordered in each column by the mean
position of their dependencies, edges as curves. Statuses become CSS classes (`st-Running`), so
a page's stylesheet colours them; every text is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass

from runner.workflow.graph import topological_order
from runner.workflow.model import Node, Workflow

NODE_W = 184
NODE_H = 54
GAP_X = 56
GAP_Y = 18
PAD = 12
_MAX_CHARS = 24


@dataclass(frozen=True)
class Placed:
    """A node's box: its column, row and top-left corner."""

    node: Node
    column: int
    row: int
    x: int
    y: int


def _columns(workflow: Workflow) -> dict[str, int]:
    """Each node's depth: 0 without dependencies, else one more than its deepest dependency."""
    order = [n.id for n in workflow.nodes]
    deps = {n.id: [d for d in n.depends_on if d in set(order)] for n in workflow.nodes}
    ordered = topological_order(order, deps)
    ordered += [n for n in order if n not in set(ordered)]  # a cycle (never valid): last column
    depth: dict[str, int] = {}
    for node in ordered:
        depth[node] = 1 + max((depth[d] for d in deps[node] if d in depth), default=-1)
    return depth


def layout(workflow: Workflow) -> list[Placed]:
    """Every node's place, deterministic (declaration order breaks ties)."""
    depth = _columns(workflow)
    declared = {n.id: i for i, n in enumerate(workflow.nodes)}
    columns: dict[int, list[Node]] = {}
    for node in workflow.nodes:
        columns.setdefault(depth[node.id], []).append(node)
    rows: dict[str, float] = {}
    for column in sorted(columns):
        nodes = columns[column]

        def key(node: Node) -> tuple[float, int]:
            placed = [rows[d] for d in node.depends_on if d in rows]
            centre = sum(placed) / len(placed) if placed else float(declared[node.id])
            return (centre, declared[node.id])

        nodes.sort(key=key)
        for i, node in enumerate(nodes):
            rows[node.id] = float(i)
    tallest = max(len(nodes) for nodes in columns.values())
    out = []
    for column, nodes in sorted(columns.items()):
        offset = (tallest - len(nodes)) * (NODE_H + GAP_Y) // 2  # centre short columns
        for row, node in enumerate(nodes):
            out.append(Placed(node, column, row, PAD + column * (NODE_W + GAP_X),
                              PAD + offset + row * (NODE_H + GAP_Y)))
    return out


def _short(text: str, limit: int = _MAX_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _subtitle(node: Node, status: str | None) -> str:
    bits = []
    if node.strategy is not None:
        if node.strategy.from_state:
            bits.append(f"× state.{node.strategy.from_state}")
        else:
            bits.append(f"× {len(node.strategy.values or [])}")
    if node.is_manual:
        bits.append("manual")
    if status:
        bits.append(status)
    return " · ".join(bits)


def to_svg(workflow: Workflow, statuses: Mapping[str, str] | None = None,
           links: Mapping[str, str] | None = None, title: str | None = None) -> str:
    """The drawing; `statuses` (node id -> status) colour the boxes, `links` (node id -> URL
    fragment or path) make them links."""
    statuses = statuses or {}
    links = links or {}
    placed = layout(workflow)
    where = {p.node.id: p for p in placed}
    width = max(p.x for p in placed) + NODE_W + PAD
    height = max(p.y for p in placed) + NODE_H + PAD
    name = title or workflow.name or "workflow"
    esc = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" viewBox="0 0 {width} '
           f'{height}" width="{width}" height="{height}" role="group" '
           f'aria-label="{esc(f"graph of {name}: {len(placed)} nodes")}">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
           'class="arrowhead"/></marker></defs>']
    for p in placed:
        for dep in p.node.depends_on:
            src = where.get(dep)
            if src is None:
                continue
            x1, y1 = src.x + NODE_W, src.y + NODE_H // 2
            x2, y2 = p.x - 2, p.y + NODE_H // 2
            mid = (x1 + x2) // 2
            out.append(f'<path class="edge" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" '
                       'marker-end="url(#arrow)"/>')
    for p in placed:
        node = p.node
        status = statuses.get(node.id)
        classes = ["node", f"st-{esc(status)}" if status else "st-none"]
        if node.is_manual:
            classes.append("manual")
        if node.is_matrix:
            classes.append("matrix")
        box = [f'<g class="{" ".join(classes)}" data-node="{esc(node.id)}">',
               f"<title>{esc(node.display_name)} ({esc(node.id)})"
               f"{esc(': ' + status) if status else ''}</title>"]
        if node.is_matrix:  # a stacked card behind the box
            box.append(f'<rect class="stack" x="{p.x + 4}" y="{p.y + 4}" width="{NODE_W}" '
                       f'height="{NODE_H}" rx="8"/>')
        box += [f'<rect class="box" x="{p.x}" y="{p.y}" width="{NODE_W}" height="{NODE_H}" '
                'rx="8"/>',
                f'<text class="label" x="{p.x + 12}" y="{p.y + 22}">'
                f"{esc(_short(node.display_name))}</text>",
                f'<text class="sub" x="{p.x + 12}" y="{p.y + 41}">'
                f"{esc(_short(_subtitle(node, status), _MAX_CHARS + 4))}</text>", "</g>"]
        link = links.get(node.id)
        if link:
            out.append(f'<a href="{esc(link)}" aria-label="{esc(node.display_name)}'
                       f'{esc(": " + status) if status else ""}">{"".join(box)}</a>')
        else:
            out.append("".join(box))
    out.append("</svg>")
    return "\n".join(out)
