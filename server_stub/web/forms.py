"""The new-run form: the workflow file at a ref is read and validated, and its declared params
(`params.schema`) become fields: a choice list for `oneOf`, a checkbox for booleans, a password
field for `secret: true` (its value is never sent back to the browser)."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from runner.workflow.validate import validate_source
from server_stub.core import Core
from server_stub.errors import ApiError
from server_stub.users import MAX_WORKFLOW_BYTES


@dataclass
class ParamField:
    """One declared param as a form field."""

    name: str
    type: str
    label: str
    description: str
    default: str
    required: bool
    choices: list[str] | None
    secret: bool
    multi_line: bool


@dataclass
class NewRunForm:
    """The form's state: what was asked, the fields found, the values given, the error."""

    repo: str = ""
    ref: str = "main"
    workflow_path: str = ""
    commit: str = ""
    name: str = ""
    fields: list[ParamField] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    labels: str = ""
    distributed: bool = False
    loaded: bool = False
    error: str = ""
    problems: list[str] = field(default_factory=list)


def _default(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def load(core: Core, repo: str, ref: str, workflow_path: str,
         values: dict[str, str] | None = None) -> NewRunForm:
    """The form for this workflow at this ref (its fields, or the reason there are none)."""
    form = NewRunForm(repo=repo, ref=ref or "main", workflow_path=workflow_path,
                      values=dict(values or {}))
    if not repo or not workflow_path:
        return form
    try:
        form.commit = core.repos.resolve(repo, form.ref)
        text = core.repos.blob(repo, form.commit, workflow_path)
    except ApiError as exc:
        form.error = exc.message
        return form
    if len(text) > MAX_WORKFLOW_BYTES:
        form.error = f"{workflow_path}: the file is larger than {MAX_WORKFLOW_BYTES} bytes"
        return form
    folder = posixpath.dirname(workflow_path)

    def exists(rel: str) -> bool:  # as users.create_run checks the codemod steps' files
        return core.repos.is_file(repo, form.commit, posixpath.normpath(
            posixpath.join(folder, rel)))

    # the checks a run's creation makes, so that the form never offers what submit refuses
    report = validate_source(text, workflow_path, for_run=True, files=exists, claimed=True)
    if report.workflow is None or report.errors:
        shown = report.errors or report.problems
        form.error = f"{workflow_path} is not a valid workflow at {form.commit[:12]}"
        form.problems = [p.render() for p in shown[:20]]
        return form
    workflow = report.workflow
    form.name = workflow.name or ""
    schema = workflow.params.schema_ if workflow.params else {}
    for name, prop in schema.items():
        default = _default(prop.default)
        form.fields.append(ParamField(
            name=name, type=prop.type.value, label=prop.name or name,
            description=prop.description or "", default="" if prop.secret else default,
            required=prop.default is None, choices=prop.allowed(), secret=bool(prop.secret),
            multi_line=bool(prop.multi_line)))
    form.loaded = True
    return form


def params_from(form: NewRunForm, posted: dict[str, str]) -> dict[str, str]:
    """The params to submit: each field's posted text (an empty one is left to its default;
    an unchecked boolean is false)."""
    out: dict[str, str] = {}
    for f in form.fields:
        key = f"param.{f.name}"
        if f.type == "boolean":
            out[f.name] = "true" if posted.get(key) == "true" else "false"
            continue
        text = posted.get(key, "")
        if text != "":
            out[f.name] = text
    return out


def extra_params(text: str) -> dict[str, str]:
    """`KEY=VALUE` lines (params of a workflow that declares none); blank lines are skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            key, _, value = line.partition("=")
            out[key.strip()] = value
    return out
