"""A claimed run's files: the workflow at its commit (cached) and the workspace archive.

Workflow files are cached under `<cache>/workflows/<repo>/<commit>/<path>`: a commit never
changes, so a cached copy is always right. Archives come from the network and are checked
member by member before anything is written: absolute names, `..`, links pointing outside the
workspace, devices and FIFOs are refused with the member's name (`unpack`).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from runner.control.checkouts import Checkouts
from runner.control.unpack import Archive, UnsafeArchive
from runner.errors import NoSpace, PermanentError

_COMMIT = re.compile(r"^[0-9a-fA-F]{7,64}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._@+-][A-Za-z0-9._@+ -]*$")

__all__ = ["UnsafeArchive", "WorkflowCache", "Workspace", "extract_archive", "prepare"]


def _relative_parts(value: str, what: str) -> tuple[str, ...]:
    """Split a server-given relative path into safe segments, refusing anything odd."""
    pure = PurePosixPath(value)
    if pure.is_absolute() or not pure.parts:
        raise PermanentError(f"{what} '{value}' must be a relative path")
    for part in pure.parts:
        if part in {".", ".."} or not _SEGMENT.match(part):
            raise PermanentError(f"{what} '{value}' has an unsafe segment '{part}'")
    return pure.parts


class WorkflowCache:
    """Workflow files by repo, commit and path; fetched once per commit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[Path, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def lock_for(self, path: Path) -> threading.Lock:
        """One lock per cached file: jobs that need the same commit at once (a distributed
        run's tasks) fetch it once, the others wait for it."""
        with self._locks_lock:
            return self._locks.setdefault(path, threading.Lock())

    def path_for(self, repo: str, commit: str, path: str) -> Path:
        """Where the file of this repo/commit/path is cached."""
        if not _COMMIT.match(commit):
            raise PermanentError(f"commit '{commit}' is not a hex SHA")
        return self.root.joinpath(*_relative_parts(repo, "repo"), commit.lower(),
                                  *_relative_parts(path, "workflow path"))

    def get(self, repo: str, commit: str, path: str, fetch: Callable[[], bytes]) -> Path:
        """The cached file, calling `fetch()` and storing its bytes atomically when missing."""
        target = self.path_for(repo, commit, path)
        if target.is_file():
            return target
        data = fetch()
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".fetch-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target


def extract_archive(data: bytes, dest: Path) -> int:
    """Extract a tar(.gz) into `dest` (created, must be empty or missing); returns the number of
    members. Refuses the whole archive, writing nothing, if one member is unsafe."""
    return len(extract_members(data, dest))


def extract_members(data: bytes, dest: Path) -> list[tarfile.TarInfo]:
    """`extract_archive`, returning the members extracted."""
    dest = dest.absolute()
    archive = Archive(data)
    archive.check(dest)
    dest.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        archive.write(dest)
    except OSError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # this runner's disk, not the archive
            raise NoSpace(dest.parent, "cannot extract the workspace") from None
        raise UnsafeArchive(f"workspace archive refused: {exc}") from None
    return archive.members


def hand_over(run_dir: Path, workspace: Path, owner: tuple[int, int]) -> None:
    """Give the workspace to the step user (uid, gid), and let it traverse the run's directory
    (0711: it cannot list it); files stay usable by the steps, and by the root daemon."""
    uid, gid = owner
    os.chmod(run_dir, 0o711)
    os.chown(workspace, uid, gid, follow_symlinks=False)
    for top, dirs, files in os.walk(workspace):
        for name in dirs + files:
            os.chown(os.path.join(top, name), uid, gid, follow_symlinks=False)


def make_git_repository(dest: Path, label: str) -> None:
    """Make a fetched workspace a git repository whose one commit is the tree as fetched (for
    `commit:` checkpoints and diffs); PermanentError naming git's complaint."""
    import subprocess

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(dest),
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Ferry",
           "GIT_AUTHOR_EMAIL": "ferry@localhost", "GIT_COMMITTER_NAME": "Ferry",
           "GIT_COMMITTER_EMAIL": "ferry@localhost"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "--no-verify",
                                                 "--allow-empty", "-m", label]):
        done = subprocess.run(["git", *args], cwd=dest, env=env, capture_output=True,
                              text=True, timeout=600, check=False)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            raise PermanentError(f"cannot make the workspace a git repository: "
                                 f"{lines[-1] if lines else 'git ' + args[0] + ' failed'}")


@dataclass(frozen=True)
class Workspace:
    """A claimed run's (or task's) checkout and its workflow file (in the cache)."""

    root: Path
    workflow_file: Path


def workspace_dir(run_dir: Path, task: str | None) -> Path:
    """Where a claim's tree is extracted under its run's work dir: one copy per job (a
    distributed run's task jobs side by side). Not under `tasks/<task>/`: that is the task's
    control dir, emptied at each attempt."""
    return run_dir / "workspaces" / task if task else run_dir / "workspace"


def prepare(cache: WorkflowCache, run_dir: Path, repo: str, commit: str, workflow_path: str,
            *, task: str | None, fetch_blob: Callable[[], bytes],
            fetch_archive: Callable[[Path], None],
            step_owner: tuple[int, int] | None,
            checkouts: Checkouts | None = None) -> Workspace:
    """The workflow file (cached) and a fresh checkout of the commit: the archive is fetched
    once per runner and commit (cached beside the workflow files), then extracted for this
    job; handed to the step user when there is one. A task job with `checkouts` takes an idle
    checkout of its run when there is one (see `checkouts`), else records its new one."""
    wf = cache.get(repo, commit, workflow_path, fetch_blob)
    workspace = workspace_dir(run_dir, task)
    workspace.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    archive = cache.path_for(repo, commit, ".ferry-archive.tar.gz")
    with cache.lock_for(archive):
        if not archive.is_file():
            archive.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            partial = archive.with_name(f".partial-{run_dir.name}-{task or 'run'}")
            try:
                fetch_archive(partial)
                os.replace(partial, archive)
            finally:
                partial.unlink(missing_ok=True)
    shutil.rmtree(workspace, ignore_errors=True)
    commits = b"commit:" in wf.read_bytes()  # checkpoints need a repository to commit in
    reuse = checkouts is not None and task is not None and not commits
    if reuse and checkouts is not None and checkouts.take(run_dir, workspace):
        return Workspace(root=workspace, workflow_file=wf)
    members = extract_members(archive.read_bytes(), workspace)
    if commits:
        make_git_repository(workspace, f"{repo} at {commit}")
    if step_owner is not None:
        if task:  # <run>/workspaces/<task>: the step user traverses both
            os.chmod(run_dir, 0o711)
        hand_over(workspace.parent, workspace, step_owner)
    if reuse and checkouts is not None:
        checkouts.extracted(workspace, archive, members, step_owner)
    return Workspace(root=workspace, workflow_file=wf)
