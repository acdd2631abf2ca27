"""What a run changed in its workspace, kept as patches: one per task (and attempt), in the
order the tasks ended, so that applying them in that order (`git apply`) replays the run.

A private git directory (`<control root>/<run>/snapshot.git`, never the user's repository)
tracks the workspace: its `base` is the workspace when the run first started (kept across
resumes), `current` is `base` plus every patch taken so far. When a task ends, the files it
changed are staged in that private index and diffed against `current`:
- a task that ran only codemod steps: exactly the files the Codemod CLI reported (git-ignored
  ones too: a codemod may change them);
- a task that ran a shell step (or a commit checkpoint): every change in the workspace not yet
  in a patch (`git add -A`, honouring `.gitignore`). With several such tasks running at once,
  a change may land in the patch of the task that ended first; the patches still add up to the
  whole change.
The patch goes to the task's `<task>.patch` log (journaled and delivered like any log; secrets
masked): `ferry patch` joins them.

A task of a distributed run (`task=`) runs in its own checkout of the run's commit: its keeper
shares the run's snapshot but has its own index and `current` ref, starting at `base`; its patch
is its change to the commit. There `base` is the first checkout of the run on this runner,
every file as checked out (the commit's tree: `.gitignore` does not apply to files the commit
has), written as one pack by `git fast-import` (2,000 files: 0.05 s, where `git add` writes
2,000 loose objects in 0.9 s).
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from runner.document import patch_log_id as patch_log_id
from runner.errors import StateError

_ENV = {"GIT_AUTHOR_NAME": "Ferry", "GIT_AUTHOR_EMAIL": "ferry@localhost",
        "GIT_COMMITTER_NAME": "Ferry", "GIT_COMMITTER_EMAIL": "ferry@localhost",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
BASE = "refs/ferry/base"
CURRENT = "refs/ferry/current"
_BASES: dict[Path, threading.Lock] = {}
_BASES_LOCK = threading.Lock()


def _base_lock(git_dir: Path) -> threading.Lock:
    """One lock per snapshot in this process: task keepers of one run start side by side."""
    with _BASES_LOCK:
        return _BASES.setdefault(git_dir, threading.Lock())


class PatchKeeper:
    """One run's snapshot of its workspace and the patches taken from it (thread-safe)."""

    def __init__(self, git_dir: Path, workspace: Path, env: Mapping[str, str], *,
                 task: str | None = None) -> None:
        self.git_dir = git_dir
        self.workspace = workspace
        self._env = {"PATH": env.get("PATH", "/usr/bin:/bin"), **_ENV,
                     "GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(workspace),
                     "HOME": str(git_dir)}
        self._task = task
        self._current = CURRENT
        self._index: Path | None = None
        if task is not None:  # its own index and ref in the run's snapshot
            self._index = git_dir / "tasks" / f"{task}.index"
            self._current = f"refs/ferry/tasks/{task}"
        self._lock = threading.Lock()

    def _git(self, *args: str, data: bytes | None = None, own_index: bool = True) -> bytes:
        env = self._env
        if own_index and self._index is not None:
            env = {**env, "GIT_INDEX_FILE": str(self._index)}
        done = subprocess.run(["git", *args], cwd=self.workspace, env=env, input=data,
                              capture_output=True, timeout=600, check=False)
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            raise StateError(f"cannot keep the run's patch (git {args[0]}): "
                             f"{lines[-1] if lines else 'failed'}")
        return done.stdout

    def _has(self, ref: str) -> bool:
        if not (self.git_dir / "HEAD").is_file():
            return False
        probe = subprocess.run(["git", "rev-parse", "--verify", "-q", ref],
                               env=self._env, capture_output=True, check=False)
        return probe.returncode == 0

    def begin(self) -> None:
        """Snapshot the workspace as the run's base, unless an earlier start did; a task's
        keeper then starts from that base (its workspace is a fresh checkout)."""
        with self._lock, _base_lock(self.git_dir):
            if self._task is None and self._has(CURRENT):
                return
            if not self._has(BASE) and self._task is not None:
                self.git_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._git("init", "-q", own_index=False)
                self._import_base()
            elif not self._has(BASE):
                self.git_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._git("init", "-q", own_index=False)
                self._git("add", "-A", own_index=False)
                tree = self._git("write-tree", own_index=False).decode().strip()
                commit = self._git("commit-tree", tree, "-m", "base",
                                   data=b"").decode().strip()
                self._git("update-ref", BASE, commit)
            if self._index is not None:
                self._index.parent.mkdir(mode=0o700, exist_ok=True)
                self._index.unlink(missing_ok=True)
                self._git("read-tree", BASE)
            self._git("update-ref", self._current, BASE)

    def _import_base(self) -> None:
        """`base`: every file of the checkout (not `.git`), through `git fast-import`."""
        proc = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=self.workspace,
                                env=self._env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        assert proc.stdin is not None
        try:
            proc.stdin.write(f"commit {BASE}\ncommitter Ferry <ferry@localhost> 0 +0000\n"
                             "data 4\nbase\n".encode())
            for path, mode, data in _files(self.workspace):
                proc.stdin.write(b"M %s inline %s\ndata %d\n" % (mode, _quote(path), len(data)))
                proc.stdin.write(data + b"\n")
            proc.stdin.close()
        except BrokenPipeError:
            pass
        err = proc.stderr.read() if proc.stderr is not None else b""
        if proc.wait() != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            raise StateError(f"cannot keep the run's patch (git fast-import): "
                             f"{lines[-1] if lines else 'failed'}")

    def end(self) -> None:
        """A task's keeper is done: its index goes (its ref stays, the history of its patch)."""
        if self._index is not None:
            self._index.unlink(missing_ok=True)

    def take(self, paths: Sequence[str] | None) -> str:
        """The patch of what changed since the last patch: in `paths` (files reported by the
        Codemod CLI, relative to the workspace), or anywhere when None."""
        with self._lock:
            if paths is not None and not paths:
                return ""
            if paths is None:
                self._git("add", "-A")
            else:
                self._git("add", "-A", "-f", "--", *paths)
            tree = self._git("write-tree").decode().strip()
            current, before = self._git("rev-parse", self._current,
                                        f"{self._current}^{{tree}}").decode().split()
            if tree == before:
                return ""
            text = self._git("diff-tree", "-p", "--binary", "--full-index", "--no-color",
                             before, tree).decode("utf-8", "surrogateescape")
            commit = self._git("commit-tree", tree, "-p", current, "-m", "task",
                               data=b"").decode().strip()
            self._git("update-ref", self._current, commit)
            return text


def _files(root: Path) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(path, git mode, content) of every file and link under `root`, `.git` left out."""
    base = os.fsencode(root)
    stack = [b""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(base, rel) if rel else base) as entries:
            for entry in entries:
                name = entry.name if isinstance(entry.name, bytes) else os.fsencode(entry.name)
                path = rel + b"/" + name if rel else name
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    if name != b".git":
                        stack.append(path)
                elif stat.S_ISLNK(st.st_mode):
                    yield path, b"120000", os.fsencode(os.readlink(entry.path))
                elif stat.S_ISREG(st.st_mode):
                    with open(entry.path, "rb") as fh:
                        data = fh.read()
                    yield path, b"100755" if st.st_mode & 0o100 else b"100644", data


def _quote(path: bytes) -> bytes:
    """A path as a C-style quoted string (fast-import's syntax for any name)."""
    out = bytearray(b'"')
    for byte in path:
        if byte in (0x22, 0x5C):
            out += b"\\" + bytes([byte])
        elif byte < 0x20 or byte >= 0x7F:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    return bytes(out + b'"')
