"""How one codemod step is handed to the Codemod CLI: a generated one-node workflow.

Why a workflow and never the faster `codemod jssg run`: `jssg run` is not equivalent to a
workflow step in any case that matters here. It has no include/exclude, no matrix values (a
shard's `_meta_files` scoping and `options.matrixValues`), exits 1 where the step succeeds (a
file whose transform throws), and reports no changed files, which Ferry needs for the task's
log and patch. A generated workflow gives the step exactly upstream's meaning; its cost is the
CLI's one-second completion poll, which `output.CodemodOutput` removes by ending the CLI once it
has logged the run's end (unless the codemod reports metrics, printed only after that poll).

The generated workflow (in the task's control dir, private) holds:
- the step as written, `${{ }}` already resolved by Ferry, its package paths (`js_file`,
  `config_file`, a shard `function`) prefixed with `pkg/`, a link to the workflow's directory
  (upstream checks the text of these paths only, and follows links: measured);
- the run's params as `params.schema` defaults (so secret values never reach argv; strings,
  numbers and booleans reach the codemod typed, as upstream's defaults do), others as `--param`;
- for a matrix task, the node's matrix with exactly this task's item (`values: [item]`): the
  CLI then scopes a step without `include` to the item's `_meta_files` and gives the script
  `options.matrixValues`, as in the original run.
The CLI runs with `--no-interactive --allow-dirty --format jsonl` (Ferry reads the events), its
run files in the control dir (`XDG_DATA_HOME`, `XDG_CONFIG_HOME`) and analytics off.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE_LINK = "pkg"
"""The link to the workflow's directory inside the generated package."""
CONTAINER_BINARY = "/ferry-tools/codemod"
"""Where the Codemod CLI is mounted (read-only) in a task container."""
CONTAINER_BUNDLE = "/ferry-bundle"
"""Where the workflow's directory is mounted (read-only) when it is outside the workspace."""
_PACKAGE_PATHS = {"js-ast-grep": ("js_file",), "ast-grep": ("config_file",)}
_METRICS = b"codemod:metrics"


@dataclass(frozen=True)
class Seen:
    """Paths as the step process sees them (on the host, or inside the task's container)."""

    binary: str
    workspace: str
    bundle: str
    package: str
    """The generated package directory (under the task's control dir)."""


@dataclass(frozen=True)
class Delegation:
    """What to execute for one codemod step."""

    argv: list[str]
    env: dict[str, str]
    wait_for_exit: bool
    """The codemod may print metrics, which come after the CLI's completion poll."""


def _package_path(value: str) -> str:
    return f"{PACKAGE_LINK}/{value.removeprefix('./')}"


def rewrite(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The step's configuration with its package paths pointing into the link."""
    out = dict(config)
    for key in _PACKAGE_PATHS.get(kind, ()):
        if isinstance(out.get(key), str):
            out[key] = _package_path(out[key])
    if kind == "shard":
        method = out.get("method")
        if isinstance(method, dict) and isinstance(method.get("function"), str):
            out["method"] = {**method, "function": _package_path(method["function"])}
        pre = out.get("js-ast-grep")
        if isinstance(pre, dict):
            out["js-ast-grep"] = rewrite("js-ast-grep", pre)
    return out


def _param_schema(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Params as schema defaults where upstream applies defaults, the rest as `--param`."""
    schema: dict[str, Any] = {}
    flags: list[str] = []
    for key, value in params.items():
        if isinstance(value, bool):
            schema[key] = {"type": "boolean", "default": value}
        elif isinstance(value, str):
            schema[key] = {"type": "string", "default": value}
        elif isinstance(value, int | float):
            schema[key] = {"type": "number", "default": value}
        else:  # arrays and objects: upstream never applies their defaults
            flags += ["--param", f"{key}={json.dumps(value, separators=(',', ':'))}"]
    return schema, flags


def generated_workflow(kind: str, config: Mapping[str, Any], *, step_name: str,
                       step_id: str | None, node_id: str, node_name: str,
                       params: Mapping[str, Any], matrix: Mapping[str, Any] | None
                       ) -> tuple[dict[str, Any], list[str]]:
    """The one-node workflow for the step and the `--param` flags it needs."""
    step: dict[str, Any] = {"name": step_name, kind: rewrite(kind, config)}
    if step_id:
        step["id"] = step_id  # the CLI gives it to the script as CODEMOD_STEP_ID
    node: dict[str, Any] = {"id": node_id, "name": node_name, "steps": [step]}
    if matrix is not None:
        node["strategy"] = {"type": "matrix", "values": [dict(matrix)]}
    schema, flags = _param_schema(params)
    workflow: dict[str, Any] = {"version": "1", "nodes": [node]}
    if schema:
        workflow["params"] = {"schema": schema}
    return workflow, flags


def prepare(kind: str, config: Mapping[str, Any], *, host_package: Path, host_bundle: Path,
            seen: Seen, step_name: str, step_id: str | None, node_id: str, node_name: str,
            params: Mapping[str, Any], matrix: Mapping[str, Any] | None,
            dry_run: bool) -> Delegation:
    """Write the generated package under `host_package` and return the command to run.

    As the task's other files (outputs files, scripts): readable, and its run-files dirs
    writable, by a step user or container user other than ours, inside the task's control dir,
    which nobody else can list (0700, or 0711 for a step user)."""
    host_package.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chmod(host_package, 0o711)
    for sub in ("data", "config"):  # the CLI's run files (XDG dirs), written by the step
        (host_package / sub).mkdir(exist_ok=True)
        os.chmod(host_package / sub, 0o777)
    link = host_package / PACKAGE_LINK
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(seen.bundle, target_is_directory=True)
    workflow, flags = generated_workflow(kind, config, step_name=step_name, step_id=step_id,
                                         node_id=node_id, node_name=node_name, params=params,
                                         matrix=matrix)
    target = host_package / "workflow.json"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.fchmod(fd, 0o644)  # not narrowed by the umask
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(workflow, fh, ensure_ascii=False)
    argv = [seen.binary, "--disable-analytics", "workflow", "run",
            "-w", f"{seen.package}/workflow.json", "-t", seen.workspace,
            "--no-interactive", "--allow-dirty", "--format", "jsonl", "--no-color", *flags]
    if dry_run:
        argv.append("--dry-run")
    env = {"XDG_DATA_HOME": f"{seen.package}/data", "XDG_CONFIG_HOME": f"{seen.package}/config",
           "DISABLE_ANALYTICS": "1"}
    return Delegation(argv, env, uses_metrics(kind, config, host_bundle))


def uses_metrics(kind: str, config: Mapping[str, Any], bundle: Path,
                 max_files: int = 2000) -> bool:
    """Whether the codemod may report metrics (`codemod:metrics` appears in a script of its
    package); a nested `codemod` step is assumed to."""
    if kind == "codemod":
        return True
    if kind == "ast-grep":
        return False
    script = config.get("js_file")
    if kind == "shard":
        method = config.get("method")
        script = method.get("function") if isinstance(method, dict) else None
        if script is None and isinstance(config.get("js-ast-grep"), dict):
            script = config["js-ast-grep"].get("js_file")
    # the script's own directory: where its helpers live (the whole package may be a repo)
    top = (bundle / str(script)).parent if isinstance(script, str) else bundle
    seen = 0
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d not in ("node_modules", ".git")]
        for name in files:
            if not name.endswith((".ts", ".js", ".mts", ".mjs", ".cts", ".cjs", ".tsx",
                                  ".jsx")):
                continue
            seen += 1
            if seen > max_files:
                return True
            try:
                if _METRICS in (Path(root) / name).read_bytes():
                    return True
            except OSError:
                continue
    return False
