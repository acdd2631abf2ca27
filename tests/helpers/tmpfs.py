"""A real small filesystem for disk-full tests: a tmpfs mounted on a directory (root only).

    with small_disk(tmp_path / "disk", "4m") as disk:
        ...               # writes under `disk` get ENOSPC past 4 MiB
        fill(disk)        # take every byte left; free() gives it back

Outside CI a machine without the right to mount skips the test; in CI (`CI=true`, root) it fails.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import IN_CI

FILLER = ".filler"


def need_mount() -> None:
    """Skip (fail in CI) when this process may not mount a tmpfs."""
    if os.geteuid() == 0 and shutil.which("mount"):
        return
    message = "mounting a tmpfs needs root"
    if IN_CI:
        pytest.fail(f"{message}; in CI the disk-full tests must not skip")
    pytest.skip(message)


@contextmanager
def small_disk(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` on `path` (created), unmounted afterwards even if the test fails."""
    need_mount()
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                   check=True, capture_output=True)
    try:
        yield path
    finally:
        # lazy: a process of a failed test may still hold a file open there
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(disk: Path, leave: int = 0) -> int:
    """Take every free byte of the filesystem under `disk` but `leave`; returns bytes taken."""
    taken = 0
    block = b"\0" * 65536
    with open(disk / FILLER, "ab", buffering=0) as fh:
        while True:
            stat = os.statvfs(disk)
            free = stat.f_bavail * stat.f_frsize - leave
            if free <= 0:
                break
            try:
                taken += fh.write(block[: min(len(block), free)])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return taken


def free(disk: Path) -> None:
    """Give back what `fill` took."""
    (disk / FILLER).unlink(missing_ok=True)
