"""Validating a workflow file read from a repository before its run is queued."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from runner.workflow.validate import validate_source
from runner.workflow.validate_codemod import needs_codemod
from server_stub.errors import ApiError

CODEMOD_LABEL = "codemod"
"""Required of the runner for a run with codemod steps (runners with the Codemod CLI serve
it)."""


def validated_workflow(text: bytes, source: str,
                       files: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """The workflow as the JSON the run document keeps; 422 with every problem if invalid.
    `files(path)`: whether a file exists in the workflow's directory at the run's commit (the
    codemod steps' `js_file`, `config_file`...)."""
    report = validate_source(text, source, files=files)
    workflow = report.workflow
    errors = report.errors
    if workflow is None or errors:
        shown = errors or report.problems
        first = shown[0].render() if shown else "invalid workflow"
        raise ApiError(422, "invalid_workflow", f"{source}: {first}",
                       problems=[{**asdict(p), "rendered": p.render()} for p in shown])
    return workflow.model_dump(mode="json", by_alias=True, exclude_none=True)


def raw_workflow(text: bytes, source: str) -> dict[str, Any]:
    """The (already validated) workflow file as a mapping: blocks the model may not keep."""
    from runner.workflow.loader import load_text

    data = load_text(text, source).data
    return data if isinstance(data, dict) else {}


def required_labels(workflow: dict[str, Any]) -> list[str]:
    """Labels a run of `workflow` needs besides the submitter's: `codemod` when a step needs
    the Codemod CLI."""
    return [CODEMOD_LABEL] if needs_codemod(workflow) else []
