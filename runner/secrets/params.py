"""Which run params a workflow declares secret (`params.schema.<name>.secret: true`, upstream's
params schema): their values are secrets, kept out of the run document (it holds `***`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MASKED_PARAM = "***"
"""What the run document holds instead of a secret param's value."""


def secret_param_names(workflow: Mapping[str, Any]) -> frozenset[str]:
    """The names of the params declared `secret: true` in a workflow document (raw dict)."""
    params = workflow.get("params")
    schema = params.get("schema") if isinstance(params, Mapping) else None
    if not isinstance(schema, Mapping):
        return frozenset()
    return frozenset(str(name) for name, spec in schema.items()
                     if isinstance(spec, Mapping) and spec.get("secret") is True)


def split_params(params: Mapping[str, str], secret_names: frozenset[str]
                 ) -> tuple[dict[str, str], dict[str, str]]:
    """(the params as the document stores them, the secret params' values)."""
    stored = {k: (MASKED_PARAM if k in secret_names else v) for k, v in params.items()}
    hidden = {k: v for k, v in params.items() if k in secret_names}
    return stored, hidden
