"""What every validation pass shares: paths, the `add` callback, the facts learned by the
structural pass, and small helpers over raw YAML/JSON values."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from runner.workflow.yamlsource import PathKey

Path = tuple[PathKey, ...]
Add = Callable[..., None]  # add(path, message, severity="error")

def as_list(value: Any) -> list[Any]:
    """`value` if it is a list, else an empty list."""
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a mapping, else an empty mapping."""
    return value if isinstance(value, dict) else {}


def as_str(value: Any) -> str | None:
    """`value` if it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def hint(word: str, choices: Iterable[str]) -> str:
    """A ` (did you mean 'x'?)` suffix when a close match exists, else ''."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


@dataclass
class Facts:
    """What the structural pass learned, for the reference checks and the summary."""

    node_ids: list[str] = field(default_factory=list)
    node_index: dict[str, int] = field(default_factory=dict)
    deps: dict[str, list[str]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    state_schema: dict[str, dict[str, Any]] | None = None
    """Declared state keys (either shape of `state.schema`); None when there is no schema."""
    params: dict[str, dict[str, Any]] | None = None
    """Declared params (`params.schema`); None when there is none."""
    dependency_count: int = 0
    template_refs: int = 0
    matrix_nodes: int = 0
    files: Callable[[str], bool] | None = None
    """Whether a path relative to the workflow's directory is a file (None: not checked)."""
