"""`ferry validate`, `ferry graph` and `ferry schema`: check, draw and describe workflow files.

Exit codes: 0 valid / written, 2 invalid workflow, unreadable file or unusable output.
Top-level imports stay light (argparse only): start-up time of `ferry validate` matters.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.exitcodes import ExitCode

if TYPE_CHECKING:
    from runner.workflow.validate import Report

GRAPH_FORMATS = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid",
                 ".png": "png", ".svg": "svg", ".pdf": "pdf"}


def register(sub: Any) -> None:
    """Add validate, graph and schema to the `ferry` parser."""
    p = sub.add_parser("validate", help="check a workflow file and report every problem",
                       description="Validate a workflow file: schema, ids, dependencies, "
                                   "cycles, templates, matrix strategies, state schema and "
                                   "${{ }} references. Exit 0 valid, 2 invalid.")
    p.add_argument("-w", "--workflow", required=True, metavar="FILE",
                   help="workflow file (YAML or JSON)")
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON: {valid, source, problems: [{path, message, "
                        "line, column, severity}], summary}")
    p.add_argument("--strict", action="store_true",
                   help="treat every warning (unknown keys, duplicates, empty matrix values...) "
                        "as an error: exit 2")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("graph", help="draw a workflow's dependency graph",
                       description="Print the dependency graph as Graphviz DOT, or write it to "
                                   "OUT: .dot, .mmd (Mermaid), or .png/.svg/.pdf (needs "
                                   "Graphviz 'dot').")
    p.add_argument("-w", "--workflow", required=True, metavar="FILE",
                   help="workflow file (YAML or JSON)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="output file; the extension picks the format (default: DOT on stdout)")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("schema", help="print the JSON Schema of workflow files",
                       description="Print the JSON Schema (draft 2020-12) of workflow files, "
                                   "for editors and language servers.")
    p.set_defaults(func=cmd_schema)


def _read(path: str) -> bytes | None:
    from runner.errors import WorkflowInvalid
    from runner.workflow.loader import read_source

    try:
        return read_source(Path(path))
    except WorkflowInvalid as exc:
        reason = exc.problems[0].message if exc.problems else str(exc)
        print(f"ferry: error: {path}: {reason}", file=sys.stderr)
        return None


def _print_invalid(report: Report, stream: Any) -> None:
    print("✗ Workflow definition is invalid", file=stream)
    for problem in report.errors:
        print(problem.render(), file=stream)
    for problem in report.warnings:
        print(problem.render(), file=stream)


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate one workflow file and print Butterflow's ✓/✗ report."""
    from dataclasses import asdict

    from runner.workflow.validate import bundle_files, validate_source

    raw = _read(args.workflow)
    if raw is None:
        return ExitCode.USAGE
    # js_file/config_file are looked for in the workflow's directory, as upstream does
    report = validate_source(raw, args.workflow, strict=args.strict,
                             files=bundle_files(Path(args.workflow).absolute().parent))
    if args.json:
        body = {"valid": report.ok, "source": args.workflow,
                "problems": [asdict(p) for p in report.problems],
                "summary": asdict(report.summary)}
        print(json.dumps(body, indent=2, ensure_ascii=False))
    elif report.ok:
        print("✓ Workflow definition is valid")
        for line in report.summary.lines():
            print(line)
        for problem in report.warnings:
            print(problem.render())
    else:
        _print_invalid(report, sys.stdout)
    return ExitCode.OK if report.ok else ExitCode.USAGE


def cmd_graph(args: argparse.Namespace) -> int:
    """Print or write the dependency graph of a valid workflow."""
    from runner.workflow.graph import to_dot, to_mermaid
    from runner.workflow.validate import validate_source

    fmt = "dot"
    if args.output:
        fmt = GRAPH_FORMATS.get(Path(args.output).suffix.lower(), "")
        if not fmt:
            known = ", ".join(sorted(GRAPH_FORMATS))
            print(f"ferry: error: cannot tell the graph format of '{args.output}' "
                  f"(use one of {known})", file=sys.stderr)
            return ExitCode.USAGE
    raw = _read(args.workflow)
    if raw is None:
        return ExitCode.USAGE
    report = validate_source(raw, args.workflow)
    if report.workflow is None:
        _print_invalid(report, sys.stderr)
        return ExitCode.USAGE
    text = to_mermaid(report.workflow) if fmt == "mermaid" else to_dot(report.workflow)
    if not args.output:
        sys.stdout.write(text)
        return ExitCode.OK
    if fmt in ("dot", "mermaid"):
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"ferry: error: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return ExitCode.USAGE
    elif not _render(text, fmt, args.output):
        return ExitCode.USAGE
    # Butterflow's two lines, printed once the file is there: a failure prints only its error
    print("Generating dependency graph...")
    print(f"Graph saved to {args.output}")
    return ExitCode.OK


def _render(dot_text: str, fmt: str, output: str) -> bool:
    import shutil
    import subprocess

    binary = shutil.which("dot")
    if binary is None:
        print(f"ferry: error: rendering .{fmt} needs Graphviz 'dot', which is not installed "
              "(Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz); "
              "or write DOT/Mermaid text with -o graph.dot / -o graph.mmd", file=sys.stderr)
        return False
    try:
        done = subprocess.run([binary, f"-T{fmt}", "-o", output], input=dot_text.encode(),
                              capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"ferry: error: Graphviz 'dot' failed: {exc}", file=sys.stderr)
        return False
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        print(f"ferry: error: Graphviz 'dot' failed: {reason[0] if reason else done.returncode}",
              file=sys.stderr)
        return False
    return True


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the workflow JSON Schema."""
    from runner.workflow.schema import workflow_json_schema_text

    sys.stdout.write(workflow_json_schema_text())
    return ExitCode.OK
