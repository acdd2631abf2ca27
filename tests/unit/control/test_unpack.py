"""Writing a workspace archive: the same checkout `tarfile`'s 'data' filter writes (every type,
mode, time and content compared on real files), and the archives it must refuse."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from runner.control.unpack import Archive, UnsafeArchive
from runner.control.workspace import extract_archive
from runner.errors import PermanentError

Member = tuple[str, str, str, int]
"""(kind, name, content or link target, mode); kind: file, dir, sym, lnk."""


def _tar(members: list[Member], compression: str = "gz") -> bytes:
    buf = io.BytesIO()
    how = {"gz": "w:gz", "": "w", "bz2": "w:bz2", "xz": "w:xz"}[compression]
    with tarfile.open(fileobj=buf, mode=how) as tar:  # type: ignore[call-overload]
        for n, (kind, name, extra, mode) in enumerate(members):
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.mtime = 1_600_000_000 + 1000 * n
            info.uid, info.gid, info.uname, info.gname = 4242, 4343, "nobody-x", "nogroup-x"
            if kind == "file":
                data = extra.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
                         "lnk": tarfile.LNKTYPE}[kind]
            info.linkname = extra
            tar.addfile(info)
    return buf.getvalue()


def tree(root: Path, dir_times: set[str] | frozenset[str] = frozenset()
         ) -> dict[str, tuple[object, ...]]:
    """Every path under root: type, permission bits, owner, content or link target, mtime (not
    for links: neither writer sets it; for directories only those in `dir_times`, the others
    have the time of their last change) and link count."""
    out: dict[str, tuple[object, ...]] = {}
    for top, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(top) / name
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path), st.st_uid)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid,
                            st.st_mtime_ns if rel in dir_times else None)
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_uid, path.read_bytes(),
                            st.st_mtime_ns, st.st_nlink)
    return out


ARCHIVES: dict[str, list[Member]] = {
    "a commit's tree": [
        ("dir", "src", "", 0o755), ("file", "src/a.ts", "var a = 1;\n", 0o644),
        ("dir", "src/b", "", 0o775), ("file", "src/b/two.ts", "var b;\n", 0o664),
        ("file", "run.sh", "#!/bin/sh\n", 0o755), ("sym", "link.ts", "src/a.ts", 0o777),
        ("sym", "src/b/up", "../a.ts", 0o777), ("file", ".gitignore", "dist/\n", 0o644),
        ("file", "empty", "", 0o644)],
    "odd modes": [
        ("file", "setuid", "x", 0o4755), ("file", "world-writable", "x", 0o666),
        ("file", "read-only", "x", 0o444), ("file", "group-exec-only", "x", 0o614),
        ("file", "no-bits", "x", 0o000), ("dir", "ro-dir", "", 0o555),
        ("file", "ro-dir/inside", "x", 0o600), ("dir", "sticky", "", 0o1777)],
    "no directory members, deep paths": [
        ("file", "a/b/c/d/e.txt", "deep", 0o644), ("file", "a/b/f.txt", "f", 0o600),
        ("file", "x y/z (1).txt", "spaces", 0o644), ("file", "ünï/çødé.txt", "utf8", 0o644)],
    "hard links and a leading ./": [
        ("dir", "./", "", 0o755), ("file", "./one", "1", 0o640), ("lnk", "two", "one", 0o640),
        ("file", "./big", "b" * 200_000, 0o644)],
    "a member written twice": [
        ("file", "twice", "first", 0o644), ("file", "twice", "second", 0o600)],
}


@pytest.mark.parametrize("compression", ["gz", "", "bz2", "xz"])
@pytest.mark.parametrize("case", sorted(ARCHIVES))
def test_the_checkout_is_what_the_data_filter_writes(tmp_path: Path, case: str,
                                                      compression: str) -> None:
    data = _tar(ARCHIVES[case], compression)
    want = tmp_path / "tarfile"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        tar.extractall(want, filter="data")
    got = tmp_path / "ferry"
    assert extract_archive(data, got) == len(ARCHIVES[case])
    dirs = {m[1].strip("./") for m in ARCHIVES[case] if m[0] == "dir"}
    expected, actual = tree(want, dirs), tree(got, dirs)
    rows = [f"{path:<24} {'same' if expected.get(path) == actual.get(path) else 'DIFFERS'}"
            for path in sorted(expected.keys() | actual.keys())]
    print(f"\n{case} ({compression or 'plain'}):\n" + "\n".join(rows))
    assert actual == expected


def test_a_partial_rewrite_writes_those_members_as_the_first_time(tmp_path: Path) -> None:
    """What `Checkouts` does to reset changed files: the same bytes, mode and time."""
    data = _tar(ARCHIVES["a commit's tree"])
    dest = tmp_path / "ws"
    extract_archive(data, dest)
    before = tree(dest)
    (dest / "src/a.ts").unlink()
    os.chmod(dest / "run.sh", 0o600)
    (dest / "run.sh").write_text("changed")
    archive = Archive(data)
    wanted = [m for m in archive.members if m.name in ("src/a.ts", "run.sh")]
    (dest / "run.sh").unlink()
    archive.write(dest, wanted)
    assert tree(dest) == before


@pytest.mark.parametrize(("members", "why"), [
    ([("sym", "d", "sub", 0o777), ("file", "d/x", "through", 0o644)], "goes through the link 'd'"),
    ([("sym", "a", ".", 0o777), ("file", "a/b/c", "through", 0o644)], "goes through the link 'a'"),
    ([("lnk", "h", "later", 0o644), ("file", "later", "x", 0o644)], "does not point to a file"),
    ([("dir", "d", "", 0o755), ("lnk", "h", "d", 0o644)], "does not point to a file"),
    ([("sym", "s", "f", 0o777), ("lnk", "h", "s", 0o644)], "does not point to a file"),
    ([("sym", ".", "ws/inner", 0o777)], "replace the workspace"),
    ([("sym", "up", "../..", 0o777)], "outside the workspace"),
])
def test_archives_that_could_write_elsewhere_are_refused_before_any_write(
        tmp_path: Path, members: list[Member], why: str) -> None:
    dest = tmp_path / "ws"
    data = _tar([("file", "first", "x", 0o644), *members])
    with pytest.raises(UnsafeArchive, match=why):
        extract_archive(data, dest)
    assert not dest.exists(), "nothing is written when one member is unsafe"


@pytest.mark.parametrize(("data", "why"), [
    (b"not an archive at all", "not a tar file"),
    (gzip.compress(b"not a tar inside"), "not a tar file"),
    (_tar([("file", "a", "".join(f"{n}\n" for n in range(20_000)), 0o644)])[:3000],
     "not a tar file"),
])
def test_damaged_archives_are_one_clear_error(tmp_path: Path, data: bytes, why: str) -> None:
    with pytest.raises(PermanentError, match=why):
        extract_archive(data, tmp_path / "ws")
    assert not (tmp_path / "ws").exists()


def test_a_truncated_member_is_refused(tmp_path: Path) -> None:
    raw = _tar([("file", "a", "x" * 5000, 0o644)], "")
    with pytest.raises(PermanentError, match=r"truncated in 'a'|not a tar file"):
        extract_archive(raw[:2048], tmp_path / "ws")


def test_a_full_disk_while_extracting_says_so_and_leaves_nothing(tmp_path: Path) -> None:
    """The runner's disk, not the archive: `NoSpace` naming the folder (the run then fails
    with "no space left on device under ...", as a full disk anywhere else does), and the
    half-written checkout is removed."""
    from runner.errors import NoSpace
    from tests.helpers.tmpfs import small_disk

    data = _tar([("file", f"f{n}.bin", "x" * 200_000, 0o644) for n in range(20)])  # 4 MB
    with small_disk(tmp_path / "disk", "2m") as disk:
        with pytest.raises(NoSpace, match=f"no space left on device under {disk}"):
            extract_archive(data, disk / "ws")
        assert not (disk / "ws").exists()
