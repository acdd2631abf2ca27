"""Step `commit:` checkpoints: after a step succeeds, its changes are committed in the workspace,
as upstream's engine does in its cloud mode (codemod 1.18.3):

    git add <add...|.>            (the paths, relative to the workspace; default: everything)
    nothing staged:  allow_empty (default true) -> "Commit checkpoint skipped (no changes): M"
                     else the step fails: "No changes staged for commit"
    else:            git commit --no-verify -m M   -> "Commit checkpoint created: M"

The workspace must be a git repository (a claimed run's workspace is made one; `ferry run
--workdir` is the user's). Git runs on the host, in the workspace, whatever the task's runtime.
When git has no identity configured, commits are made as `Ferry <ferry@localhost>`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_IDENTITY = {"GIT_AUTHOR_NAME": "Ferry", "GIT_AUTHOR_EMAIL": "ferry@localhost",
             "GIT_COMMITTER_NAME": "Ferry", "GIT_COMMITTER_EMAIL": "ferry@localhost"}


@dataclass(frozen=True)
class Checkpoint:
    """How a commit checkpoint went: its log line, or the step's failure."""

    ok: bool
    line: str


def _git(workspace: Path, env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=workspace, env=dict(env), capture_output=True,
                          text=True, timeout=300, check=False)


def git_env(base: Mapping[str, str], workspace: Path) -> dict[str, str]:
    """`base` plus a fallback identity when git has none configured for the workspace."""
    env = {k: v for k, v in base.items() if not k.startswith("GIT_")}
    probe = _git(workspace, env, "config", "user.email")
    if probe.returncode != 0 or not probe.stdout.strip():
        env.update(_IDENTITY)
    return env


def checkpoint(workspace: Path, message: str, add: Sequence[str] | None, allow_empty: bool,
               base_env: Mapping[str, str]) -> Checkpoint:
    """Stage and commit the step's changes; the outcome as one line."""
    inside = _git(workspace, base_env, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return Checkpoint(False, "commit: the workspace is not a git repository "
                                 f"({workspace})")
    env = git_env(base_env, workspace)
    added = _git(workspace, env, "add", "--", *(add or ["."]))
    if added.returncode != 0:
        return Checkpoint(False, f"commit: git add failed: {_first(added.stderr)}")
    staged = _git(workspace, env, "diff", "--cached", "--quiet")
    if staged.returncode == 0:
        if allow_empty:
            return Checkpoint(True, f"Commit checkpoint skipped (no changes): {message}")
        return Checkpoint(False, "No changes staged for commit")
    done = _git(workspace, env, "commit", "--no-verify", "-q", "-m", message)
    if done.returncode != 0:
        return Checkpoint(False, f"commit: git commit failed: {_first(done.stderr)}")
    return Checkpoint(True, f"Commit checkpoint created: {message}")


def _first(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
