"""Validate a workflow document and report every problem at once, each with its path and line.

`validate_source` never raises for bad input: parse failures, schema errors, the structural
checks, unknown keys and `${{ }}` reference checks all end up in `Report.problems`. The schema is
checked by the pydantic models themselves (one source of truth: the models also generate the
JSON Schema); their errors are mapped back to paths and lines of the source.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from runner.errors import Problem, WorkflowInvalid
from runner.workflow.loader import LoadedDocument, load_text, read_source
from runner.workflow.validate_checks import Facts, Path, check_structure
from runner.workflow.validate_codemod import BundleFiles
from runner.workflow.validate_keys import check_unknown_keys
from runner.workflow.validate_refs import check_references
from runner.workflow.yamlsource import format_path

if TYPE_CHECKING:
    from pydantic import ValidationError

    from runner.workflow.model import Workflow


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@dataclass(frozen=True)
class Summary:
    """Counts shown under `✓ Workflow definition is valid`."""

    nodes: int = 0
    dependencies: int = 0
    templates: int = 0
    template_refs: int = 0
    matrix_nodes: int = 0
    state_entries: int = 0
    params: tuple[str, ...] = ()
    """One `name (type, default ...)` per declared param."""

    def lines(self) -> list[str]:
        """Butterflow's summary lines (and the declared params, when there are any)."""
        extra = [f"Params: {len(self.params)} declared: " + "; ".join(self.params)]
        return [
            "Schema validation: Passed",
            f"Node dependencies: Valid ({_plural(self.nodes, 'node')}, "
            f"{_plural(self.dependencies, 'dependency relationship')})",
            f"Template references: Valid ({_plural(self.templates, 'template')}, "
            f"{_plural(self.template_refs, 'reference')})",
            f"Matrix strategies: Valid ({_plural(self.matrix_nodes, 'matrix node')})",
            f"State schema: Valid ({_plural(self.state_entries, 'schema definition')})",
        ] + (extra if self.params else [])


@dataclass
class Report:
    """The outcome of validating one workflow source."""

    source: str
    problems: list[Problem] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)
    data: Any = field(default=None, repr=False)
    model: Workflow | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    @property
    def errors(self) -> list[Problem]:
        """Problems of severity error."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems of severity warning."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def workflow(self) -> Workflow | None:
        """The pydantic model when the document is valid, else None."""
        return self.model if self.ok else None


class _Collector:
    def __init__(self, doc: LoadedDocument) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.seen: set[tuple[str, str]] = set()
        self.error_paths: set[str] = set()

    def add(self, path: Path, message: str, severity: str = "error", *,
            anonymous: bool = False) -> None:
        line, column = self.doc.locate(path) or (None, None)
        text = "" if anonymous else format_path(path)
        if (text, message) in self.seen:
            return
        self.seen.add((text, message))
        if severity == "error" and text:
            self.error_paths.add(text)
        self.problems.append(Problem(text, message, line, column, severity))


def validate_source(text: str | bytes, source: str, *, strict: bool = False,
                    for_run: bool = False, files: BundleFiles | None = None,
                    claimed: bool = False) -> Report:
    """Parse and validate `text` (named `source` in messages); never raises for bad input.
    `for_run`: the checks of a run about to be made (unknown keys that are not descriptive are
    errors). `files(path)`: whether a file exists in the workflow's directory (the codemod
    package: `js_file`, `config_file`...); None when that directory is not known."""
    try:
        doc = load_text(text, source)
    except WorkflowInvalid as exc:
        return Report(source, list(exc.problems))
    return validate_document(doc, strict=strict, for_run=for_run, files=files, claimed=claimed)


def bundle_files(directory: pathlib.Path) -> BundleFiles:
    """`files` for a workflow file on disk: paths relative to its directory."""
    return lambda rel: (directory / rel).is_file()


def validate_document(doc: LoadedDocument, *, strict: bool = False,
                      for_run: bool = False, files: BundleFiles | None = None,
                      claimed: bool = False) -> Report:
    """Validate an already parsed document (`claimed`: a run from a control plane, which
    pushes `pull_request` branches)."""
    out = _Collector(doc)
    data: dict[str, Any] = doc.data
    for problem in doc.problems:
        out.problems.append(problem)
    facts = check_structure(data, out.add, files)
    check_references(data, facts, out.add)
    check_unknown_keys(data, out.add, strict, for_run)
    if for_run and not claimed:
        _refuse_pull_requests(data, out)
    model = _schema(data, out)
    problems = out.problems
    if strict:  # `--strict` refuses every warning, not only unknown keys
        problems = [replace(p, severity="error") for p in problems]
    problems = sorted(problems, key=lambda p: (p.severity != "error", p.line or 0))
    return Report(doc.source, problems, _summary(facts, data), data, model)


def _refuse_pull_requests(data: dict[str, Any], out: _Collector) -> None:
    """`pull_request`/`branch_name` push a branch to the control plane's repository: a local
    run has none, so it refuses them rather than ignore them."""
    nodes = data.get("nodes")
    for i, node in enumerate(nodes if isinstance(nodes, list) else []):
        for key in ("pull_request", "branch_name"):
            if isinstance(node, dict) and node.get(key) is not None:
                out.add(("nodes", i, key), f"'{key}' pushes a branch to a control plane's "
                        "repository: submit the run with 'ferry submit' (or remove it)")


def _summary(facts: Facts, data: dict[str, Any]) -> Summary:
    templates = data.get("templates")
    return Summary(
        nodes=len(facts.node_ids),
        dependencies=facts.dependency_count,
        templates=len(templates) if isinstance(templates, list) else 0,
        template_refs=facts.template_refs,
        matrix_nodes=facts.matrix_nodes,
        state_entries=len(facts.state_schema or {}),
        params=tuple(_param_line(name, prop) for name, prop in (facts.params or {}).items()),
    )


def _param_line(name: str, prop: dict[str, Any]) -> str:
    """How `ferry validate` explains one declared param."""
    from runner.workflow.values import allowed_values, shown

    kind = prop.get("type", "?")
    bits = [str(kind)]
    allowed = allowed_values(prop) if kind == "string" else None
    if allowed:
        bits.append("one of " + ", ".join(allowed))
    if prop.get("default") is not None:
        bits.append("secret default" if prop.get("secret") else
                    f"default {shown(prop['default'])}")
    else:
        bits.append("required")
    if prop.get("secret"):
        bits.append("secret")
    if prop.get("multi_line"):
        bits.append("multi-line")
    return f"{name} ({', '.join(bits)})"


def _schema(data: dict[str, Any], out: _Collector) -> Workflow | None:
    """Validate with the pydantic models; report each error at the deepest existing path."""
    from pydantic import ValidationError

    from runner.workflow.model import Workflow

    try:
        return Workflow.model_validate(data)
    except ValidationError as exc:
        for path, message in _schema_messages(data, exc):
            text = format_path(path)
            # a structural check already explained this spot (or its parent) better
            if any(text == p or text.startswith(p + ".") or text.startswith(p + "[")
                   for p in out.error_paths):
                continue
            if path == ("version",):
                message = (f"unsupported version {data.get('version')!r} "
                           "(Ferry reads version \"1\")")
            out.add(path, message)
    return None


def _schema_messages(data: Any, exc: ValidationError) -> list[tuple[Path, str]]:
    """pydantic errors as (path, message); the alternatives of a union become one message."""
    grouped: dict[Path, list[str]] = {}
    shown: dict[Path, str] = {}
    for error in exc.errors(include_url=False):
        path, rest = _data_path(data, tuple(error["loc"]))
        message = str(error["msg"])
        if error["type"] == "value_error":  # our own validators: their message as written
            message = message.removeprefix("Value error, ")
        if error["type"] == "missing" and rest:
            message = f"missing required property '{rest[-1]}'"
        elif message.startswith("Input should be") and _is_scalar(error.get("input")):
            shown[path] = f" (got {_shown(error['input'])})"
        messages = grouped.setdefault(path, [])
        if message not in messages:
            messages.append(message)
    out: list[tuple[Path, str]] = []
    prefix = "Input should be "
    for path, messages in grouped.items():
        if len(messages) > 1 and all(m.startswith(prefix) for m in messages):
            merged = " or ".join(m[len(prefix):] for m in messages)
            out.append((path, prefix + merged + shown.get(path, "")))
        else:
            out.extend((path, m + (shown.get(path, "") if m.startswith(prefix) else ""))
                       for m in messages)
    return out


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _shown(value: Any) -> str:
    """A short rendering of an offending value for messages."""
    text = repr(value) if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[Path, tuple[Any, ...]]:
    """Split a pydantic location into the part that exists in the data and the rest."""
    path: list[str | int] = []
    current = data
    for i, item in enumerate(loc):
        in_dict = isinstance(current, dict) and isinstance(item, str) and item in current
        in_list = (isinstance(current, list) and isinstance(item, int)
                   and 0 <= item < len(current))
        if in_dict or in_list:
            current = current[item]
        else:
            return tuple(path), loc[i:]
        path.append(item)
    return tuple(path), ()


def load_workflow(path: pathlib.Path, *, strict: bool = False,
                  bundle: pathlib.Path | None = None, claimed: bool = False) -> Workflow:
    """Load and validate a workflow file for a run; WorkflowInvalid lists every error (warnings
    pass; `load_report` also gives them). `bundle`: the directory its codemod steps' files are
    in (default: the file's own)."""
    workflow = load_report(path, strict=strict, bundle=bundle, claimed=claimed).workflow
    assert workflow is not None
    return workflow


def load_report(path: pathlib.Path, *, strict: bool = False,
                bundle: pathlib.Path | None = None, claimed: bool = False) -> Report:
    """Load and validate a workflow file for a run (`for_run`): the report, whose workflow is
    set; WorkflowInvalid lists every error."""
    path = pathlib.Path(path)
    report = validate_source(read_source(path), str(path), strict=strict, for_run=True,
                             files=bundle_files(bundle or path.absolute().parent),
                             claimed=claimed)
    if report.workflow is None:
        raise WorkflowInvalid(str(path), report.errors)
    return report
