"""What a run changed in its workspace, kept as patches: one per task (and attempt), in the
order the tasks ended, so that applying them in that order (`git apply`) replays the run.

A private git directory (`<control root>/<run>/snapshot.git`, never the user's repository)
tracks the workspace: its `base` is the workspace when the run first started (kept across
resumes; honouring `.gitignore`, but a claimed run's checkout: every file of the commit, see
`snapshot_base`), `current` is the tree of `base` plus every patch taken so far. When a task
ends, the files it changed are staged in that private index and diffed against `current`:
- a task that ran only codemod steps: exactly the files the Codemod CLI reported (git-ignored
  ones too: a codemod may change them);
- a task that ran a shell step (or a commit checkpoint): every change in the workspace not yet
  in a patch (`git add -A`, honouring `.gitignore`). With several such tasks running at once,
  a change may land in the patch of the task that ended first; the patches still add up to the
  whole change.
The patch goes to the task's `<task>.patch` log (journaled and delivered like any log; secrets
masked): `ferry patch` joins them. A distributed run's task keeps its own (`task_patches`).
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.document import patch_log_id as patch_log_id
from runner.engine.snapshot_base import import_tree
from runner.errors import StateError

_ENV = {"GIT_AUTHOR_NAME": "Ferry", "GIT_AUTHOR_EMAIL": "ferry@localhost",
        "GIT_COMMITTER_NAME": "Ferry", "GIT_COMMITTER_EMAIL": "ferry@localhost",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
        # the paths a codemod reported are names, not patterns: `src/[id].tsx` (a Next.js
        # route) must not also stage `src/i.tsx` and `src/d.tsx`
        "GIT_LITERAL_PATHSPECS": "1"}
BASE = "refs/ferry/base"
CURRENT = "refs/ferry/current"


class PatchKeeper:
    """One run's snapshot of its workspace and the patches taken from it (thread-safe)."""

    def __init__(self, git_dir: Path, workspace: Path, env: Mapping[str, str], *,
                 checkout: bool = False) -> None:
        self.git_dir = git_dir
        self.workspace = workspace
        self.checkout = checkout
        """The workspace is a fresh checkout of a commit: the base is every file in it
        (`snapshot_base`), not what `git add -A` takes."""
        self._env = {"PATH": env.get("PATH", "/usr/bin:/bin"), **_ENV,
                     "GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(workspace),
                     "HOME": str(git_dir)}
        self._lock = threading.Lock()
        self._current: str | None = None  # the tree `current` names

    def _git(self, *args: str, data: bytes | None = None) -> bytes:
        done = subprocess.run(["git", *args], cwd=self.workspace, env=self.git_env(),
                              input=data, capture_output=True, timeout=600, check=False)
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            raise StateError(f"cannot keep the run's patch (git {args[0]}): "
                             f"{lines[-1] if lines else 'failed'}")
        return done.stdout

    def git_env(self) -> dict[str, str]:
        """The environment of its git commands."""
        return self._env

    def end(self) -> None:
        """Nothing to clean up: the run's snapshot stays with the run."""

    def begin(self) -> None:
        """Snapshot the workspace as the run's base, unless an earlier start did."""
        with self._lock:
            if (self.git_dir / "HEAD").is_file():
                probe = subprocess.run(["git", "rev-parse", "--verify", "-q",
                                        f"{CURRENT}^{{tree}}"],
                                       env=self._env, capture_output=True, check=False)
                if probe.returncode == 0:
                    self._current = probe.stdout.decode().strip()
                    return
            self.git_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._git("init", "-q")
            if self.checkout:
                tree = import_tree(self._env, self.workspace, BASE)
                self._git("read-tree", tree)  # the index `take` stages into
            else:
                self._git("add", "-A")
                tree = self._git("write-tree").decode().strip()
                commit = self._git("commit-tree", tree, "-m", "base", data=b"").decode().strip()
                self._git("update-ref", BASE, commit)
            self._git("update-ref", CURRENT, tree)
            self._current = tree

    def take(self, paths: Sequence[str] | None) -> str:
        """The patch of what changed since the last patch: in `paths` (files reported by the
        Codemod CLI, relative to the workspace), or anywhere when None."""
        with self._lock:
            if self._current is None:
                raise StateError("cannot keep the run's patch: its snapshot was not begun")
            if paths is not None and not paths:
                return ""
            if paths is None:
                self._git("add", "-A")
            else:
                self._git("add", "-A", "-f", "--", *paths)
            tree = self._git("write-tree").decode().strip()
            if tree == self._current:
                return ""
            text = self._git("diff-tree", "-p", "--binary", "--full-index", "--no-color",
                             self._current, tree).decode("utf-8", "surrogateescape")
            # `current` names the tree itself (no commit per task: one git call less each)
            self._git("update-ref", CURRENT, tree)
            self._current = tree
            return text
