"""Validating a workflow file read from a repository before its run is queued."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from runner.workflow.validate import validate_source
from server_stub.errors import ApiError


def validated_workflow(text: bytes, source: str) -> dict[str, Any]:
    """The workflow as the JSON the run document keeps; 422 with every problem if invalid."""
    report = validate_source(text, source)
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
