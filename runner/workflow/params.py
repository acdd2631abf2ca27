"""The params of a run, checked against `params.schema` before anything starts.

`check_params(workflow, given)` turns the `--param KEY=VALUE` texts into values of their
declared types, applies the defaults, and lists every problem (one line each): a declared param
without a default that was not given, a value that is not of its type or not one of its `oneOf`
values, a multi-line value for a param that is not `multi_line`, a param the schema does not
declare. Without a `params.schema` every given param passes as text (as before schemas).
`SECRET_MASK` replaces the value of a `secret` param wherever params are printed or stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.secrets.params import MASKED_PARAM, secret_param_names
from runner.workflow.model import Workflow
from runner.workflow.validate_base import hint
from runner.workflow.values import default_value, from_text, problem, shown

SECRET_MASK = MASKED_PARAM


@dataclass(frozen=True)
class CheckedParams:
    """The outcome of checking a run's params."""

    values: dict[str, Any] = field(default_factory=dict)
    """Every param of the run: given ones as their declared type, then defaults."""
    problems: list[str] = field(default_factory=list)
    secret: frozenset[str] = frozenset()
    """Names of the params declared `secret: true`."""

    def masked(self) -> dict[str, Any]:
        """The values with every secret one replaced by `SECRET_MASK`."""
        return mask(self.values, self.secret)


def mask(values: Mapping[str, Any], secret: frozenset[str] | set[str]) -> dict[str, Any]:
    """`values` with the secret ones replaced by `SECRET_MASK`."""
    return {k: SECRET_MASK if k in secret else v for k, v in values.items()}


def secret_names(workflow: Workflow | Mapping[str, Any] | None) -> frozenset[str]:
    """The params a workflow (model or stored JSON) declares `secret: true`."""
    if workflow is None:
        return frozenset()
    if isinstance(workflow, Workflow):
        schema = workflow.params.schema_ if workflow.params else {}
        return frozenset(k for k, p in schema.items() if p.secret)
    return secret_param_names(workflow)


def check_params(workflow: Workflow, given: Mapping[str, str]) -> CheckedParams:
    """Check and convert `given` against the workflow's `params.schema`."""
    if workflow.params is None:
        return CheckedParams(dict(given))
    schema = {name: prop.model_dump(mode="json", by_alias=True, exclude_none=True)
              for name, prop in workflow.params.schema_.items()}
    secret = frozenset(k for k, p in schema.items() if p.get("secret"))
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, text in given.items():
        prop = schema.get(name)
        if prop is None:
            problems.append(f"param '{name}' is not declared in params.schema"
                            + (hint(name, schema) or f" (declared: {', '.join(schema) or 'none'})"))
            continue
        value = from_text(prop, text)
        found = problem(prop, value, f"param '{name}'")
        want = prop.get("type")
        if found and name in secret:  # never echo a secret value
            found = f"param '{name}' is not a valid {want} (value not shown: secret)"
        elif found and isinstance(value, str) and want != "string":
            found = f"param '{name}': {shown(value)} is not a valid {want}"
        if found:
            problems.append(found)
            continue
        if isinstance(value, str) and "\n" in value and not prop.get("multi_line"):
            problems.append(f"param '{name}' has several lines but is not declared multi_line")
            continue
        values[name] = value
    for name, prop in schema.items():
        if name in values or name in given:
            continue
        if prop.get("default") is None:
            problems.append(f"param '{name}' is required (it has no default): give "
                            f"--param {name}=VALUE")
        else:
            values[name] = default_value(prop)
    return CheckedParams(values, problems, secret)
