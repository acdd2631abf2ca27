"""The files of the journal directory: names, the set-aside places, and the careful writes.

    journal/<run_id>.jsonl          a run's journal
    journal/<run_id>.lock           its owner's flock
    journal/<kind>/<run_id>.<time>.jsonl   a journal set aside (superseded, refused, damaged)
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from runner.errors import NoSpace, StateError

SUFFIX = ".jsonl"
LOCK_SUFFIX = ".lock"
ASIDE_KINDS = ("superseded", "refused", "damaged")


def journal_run_id(path: Path) -> str:
    """The run id a journal file is named after (`<run_id>.jsonl`)."""
    return path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem


def write_all(fd: int, blob: bytes) -> None:
    """Write every byte (a write may be short, e.g. when the disk fills up)."""
    view = memoryview(blob)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def write_error(exc: OSError, path: Path, what: str) -> StateError:
    """`NoSpace` for a full disk (or quota), else a `StateError` naming the file."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(path.parent, f"cannot {what}")
    return StateError(f"{path}: cannot {what}: {exc.strerror or exc}")


def fsync_dir(directory: Path) -> None:
    """Make a directory entry change durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


TASK_JOURNALS = "tasks"
"""Task jobs of distributed runs journal under `<journal dir>/tasks/<task>/`, one each."""


def journal_paths(directory: Path) -> Iterator[Path]:
    """Every journal file directly under `directory` and under its `tasks/<task>/` (not the
    set-aside ones), oldest first."""
    if not directory.is_dir():
        return iter(())
    tasks = directory / TASK_JOURNALS
    dirs = [directory]
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        dirs += sorted(p for p in tasks.iterdir() if p.is_dir())
    files = []
    for folder in dirs:
        with contextlib.suppress(FileNotFoundError):  # a task's folder removed meanwhile
            for p in folder.iterdir():
                if not p.name.endswith(SUFFIX):
                    continue
                with contextlib.suppress(FileNotFoundError):  # delivered meanwhile
                    files.append((p.stat().st_mtime, p.name, p))
    return iter(p for _, _, p in sorted(files))


def set_aside_paths(directory: Path) -> list[Path]:
    """Every journal set aside under `directory`, by kind then name."""
    return sorted(p for kind in ASIDE_KINDS if (directory / kind).is_dir()
                  for p in (directory / kind).iterdir() if p.name.endswith(SUFFIX))
