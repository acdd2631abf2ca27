"""Bare git repositories for tests: `make_repo(root, "demo", {"wf.yaml": "..."})` -> commit SHA.

Uses the git CLI with fixed argv; every commit holds exactly the files given (a full tree).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Symlink:
    """A file of a commit that is a symbolic link to `target`."""

    target: str

_IDENTITY = ["-c", "user.name=ferry-tests", "-c", "user.email=tests@ferry.invalid",
             "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]


def _git(*args: str, env: Mapping[str, str] | None = None) -> str:
    proc = subprocess.run(["git", *_IDENTITY, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def init_bare(root: Path, name: str) -> Path:
    """An empty bare repository `<root>/<name>.git` whose HEAD is `main`."""
    path = root / f"{name}.git"
    _git("init", "--quiet", "--bare", str(path))
    _git("--git-dir", str(path), "symbolic-ref", "HEAD", "refs/heads/main")
    return path


def commit(repo: Path, files: Mapping[str, str | bytes | Symlink], *,
           message: str = "test commit",
           branch: str = "main", tag: str | None = None) -> str:
    """Commit exactly `files` (path -> content) on `branch` (child of its tip); returns the SHA."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        for rel, content in files.items():
            target = work / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Symlink):
                target.symlink_to(content.target)
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        base = ["--git-dir", str(repo), "--work-tree", str(work)]
        _git(*base, "add", "--all", ".", env=env)
        tree = _git(*base, "write-tree", env=env)
        parent = subprocess.run(["git", "--git-dir", str(repo), "rev-parse", "--verify", "--quiet",
                                 f"refs/heads/{branch}"], capture_output=True, text=True,
                                check=False).stdout.strip()
        args = ["commit-tree", tree, "-m", message] + (["-p", parent] if parent else [])
        sha = _git("--git-dir", str(repo), *args)
        _git("--git-dir", str(repo), "update-ref", f"refs/heads/{branch}", sha)
        if tag:
            _git("--git-dir", str(repo), "tag", tag, sha)
        return sha


def make_repo(root: Path, name: str, files: Mapping[str, str | bytes | Symlink],
              **kw: str) -> str:
    """A new bare repo `<root>/<name>.git` with one commit of `files`; returns its SHA."""
    return commit(init_bare(root, name), files, **kw)
