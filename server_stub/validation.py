"""Validating a workflow file read from a repository, and the run's params, before its run is
queued: the checks `ferry run` makes, on the server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from runner.secrets.values import MIN_SECRET_LENGTH
from runner.workflow.params import check_params
from runner.workflow.validate import validate_source
from runner.workflow.validate_codemod import needs_codemod
from server_stub.errors import ApiError

CODEMOD_LABEL = "codemod"
"""Required of the runner for a run with codemod steps (runners with the Codemod CLI serve
it)."""


@dataclass(frozen=True)
class Validated:
    """A workflow ready for a run: its JSON, the run's params as stored, the warnings."""

    workflow: dict[str, Any]
    params: dict[str, Any]
    """Typed, defaults applied, secret values masked."""
    secret: dict[str, str]
    """The values given for params declared secret (kept encrypted, never in the document)."""
    warnings: list[str]


def validated_run(text: bytes, source: str, given: dict[str, str], *, strict: bool = False,
                  files: Callable[[str], bool] | None = None) -> Validated:
    """422 `invalid_workflow` with every problem (unknown keys that are not descriptive are
    errors for a run, every warning with `strict`), or 422 `invalid_params` with every problem
    of the params (one line each). `files(path)`: whether a file exists in the workflow's
    directory at the run's commit (the codemod steps' `js_file`, `config_file`...)."""
    report = validate_source(text, source, strict=strict, for_run=True, files=files, claimed=True)
    workflow = report.workflow
    errors = report.errors
    if workflow is None or errors:
        shown = errors or report.problems
        first = shown[0].render() if shown else "invalid workflow"
        raise ApiError(422, "invalid_workflow", f"{source}: {first}",
                       problems=[{**asdict(p), "rendered": p.render()} for p in shown])
    checked = check_params(workflow, given)
    hidden = {name: value for name, value in given.items() if name in checked.secret}
    problems = list(checked.problems)
    problems += [f"param '{name}' is declared secret: a value shorter than {MIN_SECRET_LENGTH} "
                 "characters is refused" for name, value in hidden.items()
                 if len(value.strip()) < MIN_SECRET_LENGTH]
    if problems:
        raise ApiError(422, "invalid_params", f"{source}: {problems[0]}",
                       problems=[{"message": p, "rendered": f"Error: {p}"} for p in problems])
    return Validated(workflow.model_dump(mode="json", by_alias=True, exclude_none=True),
                     checked.masked(), hidden, [p.render() for p in report.warnings])


def required_labels(workflow: dict[str, Any]) -> list[str]:
    """Labels a run of `workflow` needs besides the submitter's: `codemod` when a step needs
    the Codemod CLI."""
    return [CODEMOD_LABEL] if needs_codemod(workflow) else []
