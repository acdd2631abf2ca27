"""Node `pull_request:`: each completed task of such a node becomes a branch of the run's
repository, recorded on the run.

When a runner hands a run back (`finish`), every Completed task of a node with `pull_request`
that has no branch yet gets one: its patch (the `<task>.patch` log, delivered before the finish)
applied to the run's commit, committed with the pull request's title and body, at
`refs/heads/<branch>` of the bare repository. The branch is the node's `branch_name` (`${{
params.x }}`, `${{ task.id }}` and `${{ task.signature }}` resolved) or, as upstream names it,
`codemod-<task.signature>` (the first 8 hex digits of sha256 of the task id). The run document
gets `pull_requests: [{task, node, branch, commit, title, body, draft, base}]`. A forge's pull
request API (GitHub, GitLab) is out of reach of this server: the branch is what a reviewer or a
forge mirror picks up. Runs without a repository (reported by `ferry run -c`) get no branch.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from runner.document import TaskStatus, patch_log_id
from runner.workflow.expressions import Context, resolve

_IDENTITY = {"GIT_AUTHOR_NAME": "Ferry", "GIT_AUTHOR_EMAIL": "ferry@localhost",
             "GIT_COMMITTER_NAME": "Ferry", "GIT_COMMITTER_EMAIL": "ferry@localhost"}


def signature(task_id: str) -> str:
    """Upstream's `task.signature`: 8 hex digits of sha256 of the task id."""
    return hashlib.sha256(task_id.encode()).hexdigest()[:8]


def _git(repo: Path, env: dict[str, str], *args: str, data: bytes | None = None) -> str:
    done = subprocess.run(["git", "--git-dir", str(repo), *args], env=env, input=data,
                          capture_output=True, timeout=120, check=False)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"git {args[0]}: {lines[-1] if lines else 'failed'}")
    return done.stdout.decode().strip()


def _context(task: dict[str, Any], params: dict[str, Any]) -> Context:
    """What `branch_name` and `pull_request` may read: params, the task's matrix item and
    `task.id`/`task.signature` (upstream offers no state there)."""
    matrix = {**(task.get("matrix") or {}),
              "task": {"id": task["id"], "signature": signature(task["id"])}}
    return Context(matrix=matrix, params=params)


def branch_for(node: dict[str, Any], task: dict[str, Any], params: dict[str, Any]) -> str:
    """The branch name of one task of a `pull_request` node."""
    template = node.get("branch_name")
    if not isinstance(template, str) or not template:
        return f"codemod-{signature(task['id'])}"
    return resolve(template, _context(task, params), "branch_name")


def push(repo: Path, commit: str, patch: bytes, branch: str, message: str) -> str:
    """Apply `patch` to `commit` and point `refs/heads/<branch>` at the result; its SHA."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **_IDENTITY,
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo)}
    _git(repo, env, "check-ref-format", "--branch", branch)
    with tempfile.TemporaryDirectory(prefix="ferry-branch-") as tmp:
        env["GIT_INDEX_FILE"] = str(Path(tmp) / "index")
        _git(repo, env, "read-tree", commit)
        if patch:
            patch_file = Path(tmp) / "task.patch"
            patch_file.write_bytes(patch)
            _git(repo, env, "apply", "--cached", str(patch_file))
        tree = _git(repo, env, "write-tree")
        new = _git(repo, env, "commit-tree", tree, "-p", commit, "-m", message)
        _git(repo, env, "update-ref", f"refs/heads/{branch}", new)
    return new


def new_branches(repo: Path, commit: str, doc: dict[str, Any],
                 read_patch: Any) -> list[dict[str, Any]]:
    """Branches for the Completed tasks of `pull_request` nodes that have none yet."""
    nodes = {n.get("id"): n for n in (doc.get("workflow") or {}).get("nodes") or []}
    done = {p.get("task") for p in doc.get("pull_requests") or []}
    params = doc.get("params") or {}
    out: list[dict[str, Any]] = []
    for task in (doc.get("tasks") or {}).values():
        node = nodes.get(task.get("node_id")) or {}
        spec = node.get("pull_request")
        if (not isinstance(spec, dict) or task.get("master") or task["id"] in done
                or task.get("status") != TaskStatus.COMPLETED.value):
            continue
        record: dict[str, Any] = {"task": task["id"], "node": node.get("id"),
                                  "draft": bool(spec.get("draft", False)),
                                  "base": spec.get("base")}
        try:
            ctx = _context(task, params)
            title = resolve(str(spec.get("title") or node.get("name") or node.get("id")), ctx,
                            "pull_request.title")
            body = resolve(str(spec.get("body") or ""), ctx, "pull_request.body")
            record.update(title=title, body=body)
            branch = branch_for(node, task, params)
            record["branch"] = branch
            message = title + ("\n\n" + body if body else "")
            record["commit"] = push(repo, commit, read_patch(patch_log_id(task["id"])),
                                    branch, message)
        except Exception as exc:  # recorded on the run, never silent
            record["error"] = f"no branch: {exc}"
        out.append(record)
    return out
