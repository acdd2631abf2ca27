"""Validating a workflow file read from a repository before its run is queued."""

from __future__ import annotations

import importlib
from dataclasses import asdict
from typing import Any

from pydantic import ValidationError

from runner.errors import Problem, WorkflowInvalid
from runner.workflow.model import Workflow
from server_stub.errors import ApiError


def _problems_of(exc: ValidationError) -> list[Problem]:
    return [Problem(".".join(str(p) for p in e.get("loc", ())), str(e.get("msg", "")))
            for e in exc.errors()]


def _validate(text: bytes, source: str) -> tuple[Workflow | None, list[Problem]]:
    try:
        module = importlib.import_module("runner.workflow.validate")
    except ModuleNotFoundError:
        module = None
    if module is not None:
        report = module.validate_source(text, source)
        return (report.workflow if report.ok else None), list(report.problems)
    # Until the language owner's validator lands: parse and check against the model.
    from runner.workflow.loader import load_text

    try:
        loaded = load_text(text, source)
        return Workflow.model_validate(loaded.data), []
    except WorkflowInvalid as exc:
        return None, list(exc.problems)
    except ValidationError as exc:
        return None, _problems_of(exc)


def validated_workflow(text: bytes, source: str) -> dict[str, Any]:
    """The workflow as the JSON the run document keeps; 422 with every problem if invalid."""
    workflow, problems = _validate(text, source)
    errors = [p for p in problems if p.severity == "error"]
    if workflow is None or errors:
        shown = errors or problems
        first = shown[0].render() if shown else "invalid workflow"
        raise ApiError(422, "invalid_workflow", f"{source}: {first}",
                       problems=[{**asdict(p), "rendered": p.render()} for p in shown])
    return workflow.model_dump(mode="json", by_alias=True, exclude_none=True)
