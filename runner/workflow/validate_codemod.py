"""Checks of the codemod step kinds (`js-ast-grep`, `ast-grep`, `codemod`, `shard`) and the git
options (`commit`, `pull_request`), as the Codemod CLI 1.18.3 makes them before it runs anything:

- `js_file`, `config_file`, `base_path`, `include` and `exclude` must be relative paths with no
  `..` segment (the text is checked, as upstream does: `./a/../a` is refused too);
- `js_file`, `config_file`, a shard's `function` and its pre-filter's `js_file` must exist in the
  workflow file's directory (the codemod package) when that directory is known (`BundleFiles`);
  a path holding `${{ }}` is checked when the run resolves it;
- a built-in shard method needs a non-empty `target`; every shard needs `file_pattern` or a
  `js-ast-grep` pre-filter.

Upstream's wording is kept for these messages, so a user sees the error they know.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from runner.workflow.validate_base import Add, Path, as_dict, as_list, as_str

BundleFiles = Callable[[str], bool]
"""Whether a path relative to the workflow file's directory names an existing file."""

_PATH_FIELDS = {"js-ast-grep": ("js_file", "base_path", "include", "exclude"),
                "ast-grep": ("config_file", "base_path", "include", "exclude")}


def path_problem(value: str) -> str | None:
    """Why a workflow path field is refused (absolute, or a `..` segment), else None."""
    pure = PurePosixPath(value)
    if pure.is_absolute() or value.startswith("~"):
        return "must be relative"
    if ".." in pure.parts:
        return "must stay within the workspace root (no '..')"
    return None


def check_codemod_step(step: dict[str, Any], at: Path, add: Add, files: BundleFiles | None,
                       names: tuple[str, str]) -> None:
    """The checks of one step's codemod kind, if it has one; `names` = (step, node) names."""
    for kind in ("js-ast-grep", "ast-grep"):
        config = step.get(kind)
        if isinstance(config, dict):
            _check_paths(kind, config, (*at, kind), add)
    _exists(as_dict(step.get("js-ast-grep")).get("js_file"), (*at, "js-ast-grep", "js_file"),
            "JS file referenced in workflow not found", add, files)
    _exists(as_dict(step.get("ast-grep")).get("config_file"), (*at, "ast-grep", "config_file"),
            "AST file referenced in workflow not found", add, files)
    shard = step.get("shard")
    if isinstance(shard, dict):
        _check_shard(shard, (*at, "shard"), add, files, names)


def _check_paths(kind: str, config: dict[str, Any], where: Path, add: Add) -> None:
    for key in _PATH_FIELDS[kind]:
        value = config.get(key)
        values = value if isinstance(value, list) else [value]
        for i, item in enumerate(values):
            if not isinstance(item, str):
                continue
            problem = path_problem(item)
            if problem:
                spot = (*where, key, i) if isinstance(value, list) else (*where, key)
                add(spot, f"Workflow path field `{kind}.{key}` {problem} ('{item}'): paths are "
                          "relative to the workflow's directory (js_file, config_file) or to the "
                          "target (base_path, include, exclude)")


def _exists(value: Any, where: Path, message: str, add: Add, files: BundleFiles | None) -> None:
    path = as_str(value)
    if files is None or path is None or "${{" in path or path_problem(path):
        return
    if not files(path):
        add(where, f"{message}: {path} (relative to the workflow file's directory)")


def _check_shard(shard: dict[str, Any], where: Path, add: Add, files: BundleFiles | None,
                 names: tuple[str, str]) -> None:
    method = shard.get("method")
    step_name, node_name = names
    if isinstance(method, dict) and "function" not in method and not as_str(shard.get("target")):
        add(where, f"Step '{step_name}' in node '{node_name}': built-in shard method "
                       "requires a non-empty 'target' field")
    if isinstance(method, dict) and "function" in method:
        _exists(method.get("function"), (*where, "method", "function"),
                "Shard function referenced in workflow not found", add, files)
    pre = shard.get("js-ast-grep")
    if shard.get("file_pattern") is None and pre is None:
        add(where, f"Step '{step_name}' in node '{node_name}': shard step requires either "
                   "'file_pattern' or 'js-ast-grep'")
    if isinstance(pre, dict):
        _check_paths("js-ast-grep", pre, (*where, "js-ast-grep"), add)
        _exists(pre.get("js_file"), (*where, "js-ast-grep", "js_file"),
                "JS file referenced in shard js-ast-grep not found", add, files)


def needs_codemod(workflow: dict[str, Any]) -> bool:
    """Whether running the workflow needs the Codemod CLI: a `js-ast-grep`, `ast-grep` or
    `codemod` step, or a shard with a `function` or a `js-ast-grep` pre-filter."""
    owners = [*as_list(workflow.get("nodes")), *as_list(workflow.get("templates"))]
    for owner in owners:
        for step in as_list(as_dict(owner).get("steps")):
            step = as_dict(step)
            if any(step.get(k) is not None for k in ("js-ast-grep", "ast-grep", "codemod")):
                return True
            shard = as_dict(step.get("shard"))
            if shard.get("js-ast-grep") is not None or "function" in as_dict(shard.get("method")):
                return True
    return False
