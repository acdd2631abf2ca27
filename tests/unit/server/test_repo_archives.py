"""The stub's workspace archives: the commit's tree as tar.gz, made once per commit and kept
within a memory bound (real bare repositories, real git)."""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from server_stub import repos as repos_module
from server_stub.repos import Repos
from tests.helpers.gitrepo import commit, init_bare


def _names(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        out = {}
        for member in tar.getmembers():
            fh = tar.extractfile(member) if member.isfile() else None
            out[member.name] = fh.read() if fh is not None else b""
        return out


def test_an_archive_is_the_commit_tree_made_once(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    bare = init_bare(tmp_path, "app")
    sha = commit(bare, {"src/a.ts": "var a;\n", "README": "# app\n", "bin/x": b"\x00\x01"})
    repos = Repos(tmp_path)
    first = repos.archive("app", sha)
    assert first[:2] == b"\x1f\x8b" and gzip.decompress(first)  # a gzip stream
    assert _names(first) == {"src": b"", "src/a.ts": b"var a;\n", "README": b"# app\n",
                             "bin": b"", "bin/x": b"\x00\x01"}
    calls: list[list[str]] = []
    real = subprocess.run

    def counting(argv: list[str], *args: object, **kw: object) -> object:
        calls.append(argv)
        return real(argv, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(repos_module.subprocess, "run", counting)
    assert repos.archive("app", sha) is first
    assert not [argv for argv in calls if "archive" in argv], "made again"


def test_archives_kept_stay_within_the_bound_newest_always(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = init_bare(tmp_path, "app")
    shas = [commit(bare, {"f.txt": f"version {n}\n" * 200}) for n in range(4)]
    repos = Repos(tmp_path)
    one = len(repos.archive("app", shas[0]))
    monkeypatch.setattr(repos_module, "_CACHE_ARCHIVE_BYTES", 2 * one + one // 2)
    for sha in shas[1:]:
        repos.archive("app", sha)
    kept = [sha for _, sha in repos._archives]
    assert kept == shas[2:], "the two newest fit the bound; older ones were dropped"
    assert repos._archive_bytes == sum(len(v) for v in repos._archives.values())
    monkeypatch.setattr(repos_module, "_CACHE_ARCHIVE_BYTES", 1)
    repos.archive("app", shas[0])
    assert [sha for _, sha in repos._archives] == [shas[0]]
