"""Workflow cache and safe archive extraction, on real files and real tarballs."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from runner.control.workspace import UnsafeArchive, WorkflowCache, extract_archive
from runner.errors import PermanentError

COMMIT = "a" * 40


def _tar(*members: tuple[str, str, str]) -> bytes:
    """members: (kind, name, content-or-link-target) with kind file|dir|sym|lnk|fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for kind, name, extra in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = extra.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "lnk": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE}[kind]
            info.linkname = extra
            tar.addfile(info)
    return buf.getvalue()


def test_cache_fetches_once_per_commit(tmp_path: Path) -> None:
    cache = WorkflowCache(tmp_path)
    calls: list[int] = []

    def fetch() -> bytes:
        calls.append(1)
        return b"version: 1\n"

    first = cache.get("examples", COMMIT, "flows/hello.yaml", fetch)
    second = cache.get("examples", COMMIT, "flows/hello.yaml", fetch)
    assert first == second == tmp_path / "examples" / COMMIT / "flows" / "hello.yaml"
    assert first.read_bytes() == b"version: 1\n"
    assert len(calls) == 1
    cache.get("examples", "b" * 40, "flows/hello.yaml", fetch)
    assert len(calls) == 2


@pytest.mark.parametrize(("repo", "commit", "path"), [
    ("../etc", COMMIT, "w.yaml"), ("ok", "not-a-sha", "w.yaml"), ("ok", COMMIT, "../../x"),
    ("ok", COMMIT, "/etc/passwd"), ("/abs", COMMIT, "w.yaml"),
])
def test_cache_refuses_unsafe_names(tmp_path: Path, repo: str, commit: str, path: str) -> None:
    with pytest.raises(PermanentError):
        WorkflowCache(tmp_path).get(repo, commit, path, lambda: b"x")
    assert not any(tmp_path.iterdir())


def test_extracts_files_dirs_and_inner_links(tmp_path: Path) -> None:
    dest = tmp_path / "ws"
    data = _tar(("dir", "src", ""), ("file", "src/a.txt", "hello"),
                ("sym", "src/link", "a.txt"), ("file", "README", "top"))
    assert extract_archive(data, dest) == 4
    assert (dest / "src/a.txt").read_text() == "hello"
    assert (dest / "src/link").read_text() == "hello"
    assert (dest / "README").read_text() == "top"


@pytest.mark.parametrize(("member", "why"), [
    (("file", "/etc/evil", "x"), "absolute"),
    (("file", "../evil", "x"), r"'\.\.'"),
    (("file", "a/../../evil", "x"), r"'\.\.'"),
    (("sym", "link", "/etc/passwd"), "absolute"),
    (("sym", "sub/link", "../../outside"), "outside"),
    (("lnk", "hard", "../outside"), "outside"),
    (("fifo", "pipe", ""), "FIFO"),
])
def test_unsafe_members_refuse_the_whole_archive(tmp_path: Path, member: tuple[str, str, str],
                                                  why: str) -> None:
    dest = tmp_path / "ws"
    data = _tar(("file", "good.txt", "fine"), member)
    with pytest.raises(UnsafeArchive, match=why):
        extract_archive(data, dest)
    assert not (dest / "good.txt").exists(), "nothing is written when one member is unsafe"
    assert not (tmp_path / "evil").exists() and not (tmp_path / "outside").exists()


def test_garbage_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="not a tar file"):
        extract_archive(b"definitely not a tarball", tmp_path / "ws")


def test_task_jobs_starting_together_fetch_the_archive_once(tmp_path: Path) -> None:
    """Four task jobs of one run start at once on a fresh daemon: one archive download, four
    checkouts side by side."""
    import threading

    from runner.control.workspace import prepare

    cache = WorkflowCache(tmp_path / "cache")
    fetched: list[str] = []
    first_started = threading.Event()
    release = threading.Event()

    def fetch_archive(to: Path) -> None:
        fetched.append(to.name)
        first_started.set()
        release.wait(10)  # the others arrive while this download is under way
        to.write_bytes(_tar(("file", "src/a.txt", "a")))

    results: list[Path] = []

    def job(task: str) -> None:
        ws = prepare(cache, tmp_path / "work" / "run", "demo", "a" * 40, "wf.yaml", task=task,
                     fetch_blob=lambda: b"version: '1'\n", fetch_archive=fetch_archive,
                     step_owner=None)
        results.append(ws.root)

    threads = [threading.Thread(target=job, args=(f"t{i}",)) for i in range(4)]
    threads[0].start()
    assert first_started.wait(10)
    for thread in threads[1:]:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(30)
    assert len(fetched) == 1, fetched
    assert sorted(p.name for p in results) == ["t0", "t1", "t2", "t3"]
    assert all((p / "src" / "a.txt").read_text() == "a" for p in results)
