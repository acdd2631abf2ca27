"""Task checkouts reused by the next task of their run: whatever a task did to its checkout, the
next task gets the commit exactly as a fresh extraction writes it (real files, real tarballs)."""

from __future__ import annotations

import io
import logging
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.control.checkouts import Checkouts
from runner.control.workspace import WorkflowCache, extract_archive, prepare

COMMIT = "c" * 40


def _archive() -> bytes:
    """A small commit: nested directories, an executable, a link, a dot file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name: str, kind: str = "file", data: str = "", mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.mtime = 1_700_000_000
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "sym":
                info.type = tarfile.SYMTYPE
                info.linkname = data
                tar.addfile(info)
            else:
                raw = data.encode()
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
        add("src", "dir", mode=0o755)
        add("src/a.ts", data="var a = 1;\n")
        add("src/b", "dir", mode=0o755)
        add("src/b/two.ts", data="var b = 2;\n")
        add("src/b/deep", "dir", mode=0o755)
        add("src/b/deep/three.ts", data="var c = 3;\n")
        add("run.sh", data="#!/bin/sh\necho hi\n", mode=0o755)
        add("link.ts", "sym", "src/a.ts")
        add(".gitignore", data="dist/\n")
        add("wf.yaml", data="version: '1'\n")
    return buf.getvalue()


ARCHIVE = _archive()


def tree(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every path under root: (type, permission bits, content or link target)."""
    out: dict[str, tuple[str, int, str]] = {"": ("dir", stat.S_IMODE(os.lstat(root).st_mode), "")}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(top) / name
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), "")
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_text())
    return out


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _same_size_old_times(root: Path) -> None:
    """The same size and the old mtime: only the ctime tells."""
    path = root / "src" / "a.ts"
    before = os.stat(path)
    path.write_text("var A = 9;\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _replace_dir_by_file(root: Path) -> None:
    shutil.rmtree(root / "src" / "b")
    (root / "src" / "b").write_text("a file now\n")


def _replace_file_by_dir(root: Path) -> None:
    (root / "src" / "a.ts").unlink()
    (root / "src" / "a.ts").mkdir()
    (root / "src" / "a.ts" / "x").write_text("x\n")


def _retarget_link(root: Path) -> None:
    (root / "link.ts").unlink()
    (root / "link.ts").symlink_to("src/b/two.ts")


def _link_to_file(root: Path) -> None:
    (root / "link.ts").unlink()
    (root / "link.ts").write_text("no longer a link\n")


def _file_to_link(root: Path) -> None:
    (root / "src" / "b" / "two.ts").unlink()
    (root / "src" / "b" / "two.ts").symlink_to("../a.ts")


def _rename(root: Path) -> None:
    (root / "src" / "a.ts").rename(root / "src" / "renamed.ts")


CHANGES: list[tuple[str, Callable[[Path], None]]] = [
    ("nothing", lambda root: None),
    ("file rewritten", lambda root: _write(root / "src" / "a.ts", "const a = 1\n")),
    ("same size, mtime set back", _same_size_old_times),
    ("file made executable", lambda root: os.chmod(root / "src" / "a.ts", 0o755)),
    ("executable made plain", lambda root: os.chmod(root / "run.sh", 0o644)),
    ("file deleted", lambda root: (root / "src" / "b" / "two.ts").unlink()),
    ("file renamed", _rename),
    ("directory deleted", lambda root: shutil.rmtree(root / "src" / "b")),
    ("directory mode changed", lambda root: os.chmod(root / "src" / "b", 0o700)),
    ("checkout root mode changed", lambda root: os.chmod(root, 0o700)),
    ("file added", lambda root: _write(root / "src" / "new.ts", "new\n")),
    ("ignored tree added", lambda root: (
        (root / "dist" / "x").mkdir(parents=True), _write(root / "dist" / "x" / "o.js", "o"))),
    ("file replaced by a directory", _replace_file_by_dir),
    ("directory replaced by a file", _replace_dir_by_file),
    ("link retargeted", _retarget_link),
    ("link replaced by a file", _link_to_file),
    ("file replaced by a link", _file_to_link),
]


def _prepare(tmp_path: Path, checkouts: Checkouts | None, task: str,
             workflow: bytes = b"version: '1'\n") -> Path:
    return prepare(WorkflowCache(tmp_path / "cache"), tmp_path / "work" / "run", "demo", COMMIT,
                   "wf.yaml", task=task, fetch_blob=lambda: workflow,
                   fetch_archive=lambda to: to.write_bytes(ARCHIVE), step_owner=None,
                   checkouts=checkouts).root


def test_every_change_a_task_makes_is_undone_for_the_next_task(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    extract_archive(ARCHIVE, fresh)
    want = tree(fresh)
    rows = []
    for n, (name, change) in enumerate(CHANGES):
        base = tmp_path / f"case{n}"
        checkouts = Checkouts(keep=1)
        first = _prepare(base, checkouts, "t1")
        assert tree(first) == want
        inode = os.stat(first).st_ino
        change(first)
        checkouts.give_back(first)
        second = _prepare(base, checkouts, "t2")
        reused = os.stat(second).st_ino == inode
        same = tree(second) == want
        rows.append((name, reused, same))
        assert not first.exists()
    print("\n| change by the task | checkout reused | next task sees the commit |")
    for name, reused, same in rows:
        print(f"| {name} | {reused} | {same} |")
    assert all(reused and same for _, reused, same in rows), rows


def test_at_most_keep_checkouts_wait_and_the_oldest_goes_first(tmp_path: Path) -> None:
    checkouts = Checkouts(keep=2)
    roots = [_prepare(tmp_path, checkouts, f"t{i}") for i in range(3)]
    inodes = [os.stat(r).st_ino for r in roots]
    for root in roots:
        checkouts.give_back(root)
    idle = sorted((tmp_path / "work" / "run" / "workspaces").iterdir())
    assert len(idle) == 2 and all(p.name.startswith(".idle-") for p in idle)
    assert sorted(os.stat(p).st_ino for p in idle) == sorted(inodes[1:])
    checkouts.clear()
    assert not any((tmp_path / "work" / "run" / "workspaces").iterdir())


def test_a_checkout_that_cannot_be_reset_is_removed_and_said(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    checkouts = Checkouts(keep=1)
    first = _prepare(tmp_path, checkouts, "t1")
    (first / "src" / "a.ts").write_text("changed\n")
    archive = next((tmp_path / "cache").rglob(".ferry-archive.tar.gz"))
    archive.write_bytes(b"no longer a tarball")  # nothing to restore the file from
    with caplog.at_level(logging.WARNING, logger="ferry.daemon"):
        checkouts.give_back(first)
    assert "could not be reset" in caplog.text
    assert not any((tmp_path / "work" / "run" / "workspaces").iterdir())


def test_workflows_that_commit_get_a_fresh_checkout_each_time(tmp_path: Path) -> None:
    checkouts = Checkouts(keep=1)
    workflow = b"version: '1'\nnodes: [{id: a, steps: [{run: x, commit: {message: m}}]}]\n"
    first = _prepare(tmp_path, checkouts, "t1", workflow)
    assert (first / ".git").is_dir()
    checkouts.give_back(first)
    assert not first.exists()
    assert not any((tmp_path / "work" / "run" / "workspaces").iterdir())


def test_a_released_checkout_is_reset_on_its_own_thread_and_the_next_task_waits_for_it(
        tmp_path: Path) -> None:
    """`release` (what a job does once its steps are over): the reset runs while the job
    delivers and the daemon claims the next task; that task's `take` waits for the reset
    instead of extracting a new checkout, and gets the commit back."""
    fresh = tmp_path / "fresh"
    extract_archive(ARCHIVE, fresh)
    want = tree(fresh)
    checkouts = Checkouts(keep=1)
    first = _prepare(tmp_path, checkouts, "t1")
    inode = os.stat(first).st_ino
    for n in range(3000):  # enough for the reset to take a while
        (first / "src" / f"new{n}.ts").write_text("added by the task\n")
    (first / "src" / "a.ts").write_text("changed\n")
    thread = checkouts.release(first)
    second = _prepare(tmp_path, checkouts, "t2")  # at once: the reset is still running
    assert os.stat(second).st_ino == inode, "a new extraction instead of the reset checkout"
    assert tree(second) == want
    thread.join(30)
    assert checkouts.settle(timeout=5)
