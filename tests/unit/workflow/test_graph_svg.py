"""The workflow graph as SVG: columns by depth, statuses as classes, links, text escaped, and a
well-formed document for every example workflow."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from runner.workflow.graph_svg import layout, to_svg
from runner.workflow.model import Workflow
from runner.workflow.validate import validate_source

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.yaml"))
NS = {"s": "http://www.w3.org/2000/svg"}
SVG = "{http://www.w3.org/2000/svg}"


def _workflow(nodes: list[dict]) -> Workflow:
    return Workflow.model_validate({"version": "1", "nodes": nodes})


def test_columns_follow_dependencies_and_rows_their_parents() -> None:
    wf = _workflow([
        {"id": "a", "steps": [{"run": "true"}]},
        {"id": "b", "steps": [{"run": "true"}]},
        {"id": "c", "depends_on": ["b"], "steps": [{"run": "true"}]},
        {"id": "d", "depends_on": ["a", "c"], "steps": [{"run": "true"}]},
    ])
    where = {p.node.id: (p.column, p.row) for p in layout(wf)}
    print(where)
    assert where == {"a": (0, 0), "b": (0, 1), "c": (1, 0), "d": (2, 0)}


def test_statuses_links_and_escaping() -> None:
    wf = _workflow([
        {"id": "build", "name": "<Build & \"ship\">", "steps": [{"run": "true"}]},
        {"id": "gate", "type": "manual", "depends_on": ["build"], "steps": [{"run": "true"}]},
        {"id": "fan", "depends_on": ["gate"], "strategy": {"type": "matrix",
                                                            "values": [{"x": 1}, {"x": 2}]},
         "steps": [{"run": "true"}]},
    ])
    svg = to_svg(wf, {"build": "Completed", "gate": "AwaitingTrigger"},
                 {"build": "/runs/r?task=t&x=<y>"})
    root = ET.fromstring(svg)  # well-formed XML
    groups = {g.get("data-node"): g.get("class") for g in root.iter(SVG + "g")}
    assert groups == {"build": "node st-Completed", "gate": "node st-AwaitingTrigger manual",
                      "fan": "node st-none matrix"}
    assert "&lt;Build &amp; &quot;ship&quot;&gt;" in svg and "<Build" not in svg
    links = [a.get("href") for a in root.iter(SVG + "a")]
    assert links == ["/runs/r?task=t&x=<y>"]  # escaped in the text, intact once parsed
    assert len(list(root.iter(SVG + "path"))) == 3  # two edges and the arrowhead


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_draws(path: Path) -> None:
    report = validate_source(path.read_bytes(), path.name)
    if report.workflow is None:
        pytest.skip("not a valid workflow (an example of an error)")
    root = ET.fromstring(to_svg(report.workflow))
    assert len(root.findall(".//s:g", NS)) == len(report.workflow.nodes)
