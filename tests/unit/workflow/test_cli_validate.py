"""`ferry validate`, `ferry graph` and `ferry schema` as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.workflow.schema import workflow_json_schema_text
from tests.helpers import IN_CI

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "butterflow"

SEED_VALID = """\
version: "1"
state:
  schema:
    - {name: shards, type: array}
    - {name: report, type: object}
templates:
  - id: checkout
    inputs: [{name: repo, default: "."}]
    steps: [{run: "echo ${{inputs.repo}}"}]
  - id: lint
    steps: [{run: echo lint}]
nodes:
  - id: a
    steps: [{use: {template: checkout}}, {use: {template: lint}}]
  - id: b
    depends_on: [a]
    strategy: {type: matrix, values: [{region: us}]}
    steps: [{use: {template: checkout, inputs: {repo: x}}}]
  - id: c
    type: manual
    depends_on: [b]
    steps: [{run: echo done}]
"""


def ferry(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True,
                          text=True, cwd=cwd or REPO, timeout=60)


def _write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_valid_workflow_prints_seed_summary(tmp_path: Path) -> None:
    done = ferry("validate", "-w", str(_write(tmp_path, SEED_VALID)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "✓ Workflow definition is valid",
        "Schema validation: Passed",
        "Node dependencies: Valid (3 nodes, 2 dependency relationships)",
        "Template references: Valid (2 templates, 3 references)",
        "Matrix strategies: Valid (1 matrix node)",
        "State schema: Valid (2 schema definitions)",
    ]


def test_invalid_workflow_lists_every_error_exit_2(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        version: "1"
        nodes:
          - {id: node-a, depends_on: [node-b], steps: [{run: x}]}
          - {id: node-b, depends_on: [non-existent-node, node-a], steps: [{run: x}]}
          - {id: node-c, strategy: {type: matrix}, steps: [{run: x}]}
        """)
    done = ferry("validate", "-w", str(path))
    assert done.returncode == 2
    lines = done.stdout.splitlines()
    assert lines[0] == "✗ Workflow definition is invalid"
    assert "Error: Cyclic dependency detected: node-a → node-b → node-a (line 3)" in lines
    assert ("Error at nodes[1].depends_on[0]: Referenced node 'non-existent-node' does not "
            "exist (line 4)") in lines
    assert ("Error at nodes[2].strategy: Matrix strategy requires 'values' or 'from_state' "
            "property (line 5)") in lines
    assert "Traceback" not in done.stderr


def test_json_output_and_strict(tmp_path: Path) -> None:
    path = _write(tmp_path, 'version: "1"\nnodes:\n  - {id: a, stpes: [], steps: []}\n')
    done = ferry("validate", "-w", str(path), "--json")
    assert done.returncode == 0
    body = json.loads(done.stdout)
    assert body["valid"] is True
    assert body["problems"] == [{"path": "nodes[0].stpes", "line": 3, "column": 13,
                                 "severity": "warning",
                                 "message": "unknown key 'stpes' (did you mean 'steps'?)"}]
    done = ferry("validate", "-w", str(path), "--json", "--strict")
    assert done.returncode == 2
    assert json.loads(done.stdout)["problems"][0]["severity"] == "error"
    done = ferry("validate", "-w", str(path))
    assert done.stdout.splitlines()[-1] == ("Warning at nodes[0].stpes: unknown key 'stpes' "
                                            "(did you mean 'steps'?) (line 3)")


def test_missing_file_is_one_line_exit_2(tmp_path: Path) -> None:
    done = ferry("validate", "-w", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().count("\n") == 0
    assert "nope.yaml: cannot read the workflow file: No such file or directory" in done.stderr


def test_hostile_file_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "junk.yaml"
    path.write_bytes(b"\x00\x01binary\xff")
    done = ferry("validate", "-w", str(path))
    assert done.returncode == 2 and "binary data" in done.stdout
    assert "Traceback" not in done.stderr + done.stdout


def test_graph_dot_on_stdout_marks_manual_and_matrix(tmp_path: Path) -> None:
    done = ferry("graph", "-w", str(_write(tmp_path, SEED_VALID)))
    assert done.returncode == 0, done.stderr
    dot = done.stdout
    assert dot.startswith('digraph "workflow" {')
    assert '"a" -> "b";' in dot and '"b" -> "c";' in dot
    assert '"c" [label="c\\nmanual node", shape=octagon' in dot
    assert "matrix: 1 item\\n" in dot or "matrix: 1 item\"" in dot
    assert "1 items" not in dot and "peripheries=2" in dot
    assert ferry("graph", "-w", str(tmp_path / "wf.yaml")).stdout == dot  # deterministic


def test_graph_manual_trigger_drawn_dashed() -> None:
    fixture = FIXTURES / "doc-docs-workflows_orchestration-matrix-manual.yaml"
    done = ferry("graph", "-w", str(fixture))
    line = next(x for x in done.stdout.splitlines() if x.startswith('  "matrix-codemod"'))
    assert "manual trigger" in line and "dashed" in line and "matrix: state.shards" in line


def test_graph_writes_dot_and_mermaid(tmp_path: Path) -> None:
    wf = _write(tmp_path, SEED_VALID)
    done = ferry("graph", "-w", str(wf), "-o", str(tmp_path / "g.mmd"))
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["Generating dependency graph...",
                                        f"Graph saved to {tmp_path / 'g.mmd'}"]
    mermaid = (tmp_path / "g.mmd").read_text()
    assert mermaid.startswith("flowchart LR") and "n0 --> n1" in mermaid
    assert 'n2{{"c<br/>manual node"}}' in mermaid and 'n1[["b<br/>matrix: 1 item"]]' in mermaid
    assert ferry("graph", "-w", str(wf), "-o", str(tmp_path / "g.dot")).returncode == 0
    assert (tmp_path / "g.dot").read_text().startswith("digraph")


def test_graph_renders_svg_with_graphviz(tmp_path: Path) -> None:
    if shutil.which("dot") is None:  # scripts/setup installs graphviz
        if IN_CI:
            pytest.fail("Graphviz 'dot' is missing; in CI this test must not skip")
        pytest.skip("Graphviz 'dot' is not installed")
    out = tmp_path / "g.svg"
    done = ferry("graph", "-w", str(_write(tmp_path, SEED_VALID)), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "<svg" in out.read_text()


def test_graph_png_without_graphviz_says_how_to_install(tmp_path: Path) -> None:
    wf = _write(tmp_path, SEED_VALID)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    done = subprocess.run([str(bindir / "python"), "-m", "runner", "graph", "-w", str(wf),
                           "-o", str(tmp_path / "g.png")], capture_output=True, text=True,
                          cwd=REPO, env={"PATH": str(bindir)}, timeout=60)
    assert done.returncode == 2
    assert "apt-get install graphviz" in done.stderr
    assert done.stdout == ""  # nothing announced before the failure
    assert not (tmp_path / "g.png").exists()


def test_graph_to_an_unwritable_place_prints_only_the_error(tmp_path: Path) -> None:
    out = tmp_path / "no-such-dir" / "g.dot"
    done = ferry("graph", "-w", str(_write(tmp_path, SEED_VALID)), "-o", str(out))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == f"ferry: error: cannot write {out}: No such file or directory"


def test_graph_of_invalid_workflow_and_unknown_format(tmp_path: Path) -> None:
    bad = _write(tmp_path, 'version: "1"\nnodes: [{id: a, depends_on: [a], steps: []}]\n')
    done = ferry("graph", "-w", str(bad))
    assert done.returncode == 2 and "Cyclic dependency detected: a → a" in done.stderr
    done = ferry("graph", "-w", str(bad), "-o", str(tmp_path / "g.jpeg"))
    assert done.returncode == 2 and "cannot tell the graph format" in done.stderr


def test_schema_command_prints_the_generated_schema() -> None:
    done = ferry("schema")
    assert done.returncode == 0
    assert done.stdout == workflow_json_schema_text()
    assert json.loads(done.stdout)["$schema"] == "https://json-schema.org/draft/2020-12/schema"
