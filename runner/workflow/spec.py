"""Language facts that need no pydantic: durations and the step kinds Ferry does not run.

Kept apart from `model.py` so that `ferry validate` can check a file without importing pydantic
(start-up time); `model.py` re-exports these names.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: str | int | float) -> float:
    """Seconds in `30s`, `10m`, `1.5h`, `250ms` or a bare number; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number or a string such as '30s' or '10m'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"'{value}' is not a duration (use e.g. '30s', '10m', '2h', '250ms')")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return seconds


# Butterflow step kinds that Ferry recognises only to say they are not supported
# (YAML key -> Step field name).
UNSUPPORTED_STEP_KINDS = {
    "ai": "ai",
    "install-skill": "install_skill",
}

# Step kinds the Codemod CLI runs for Ferry, and the one Ferry computes itself (YAML key -> Step
# field name).
CODEMOD_STEP_KINDS = {
    "js-ast-grep": "js_ast_grep",
    "ast-grep": "ast_grep",
    "codemod": "codemod",
    "shard": "shard",
}


def unsupported_kind_message(kind: str) -> str:
    """The one line every command gives for a step kind Ferry does not run."""
    return f"step kind '{kind}' is not supported by Ferry (use a 'run' step that calls the tool)"
