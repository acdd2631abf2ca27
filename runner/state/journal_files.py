"""The files of the journal directory: names, the owner's lock, the set-aside places, and the
careful writes (whole, durable, atomic where it matters).

    journal/<run_id>.jsonl          a run's journal
    journal/<run_id>.lock           its owner's flock
    journal/<kind>/<run_id>.<time>.jsonl   a journal set aside (superseded, refused, damaged)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from runner.errors import NoSpace, StateError
from runner.state import journal_lines as lines

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
    except OSError:  # best effort: the records' own file was fsynced and checked already
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory; the file's fsync held
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


class JournalBusy(StateError):
    """Another live process (or another object of this one) owns the journal."""


def take_owner_lock(journal: Path, lock_path: Path) -> int:
    """Hold the exclusive flock that makes this process the journal's owner (released by the
    kernel if it dies); returns the lock file's descriptor. `JournalBusy` when it is held."""
    try:
        journal.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise write_error(exc, journal, "lock the journal") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalBusy(f"{journal}: in use by another ferry process") from None
    return fd


def truncate(path: Path, size: int) -> None:
    """Cut a torn tail off the journal file, durably."""
    try:
        with open(path, "r+b") as fh:
            fh.truncate(size)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise StateError(f"{path}: cannot repair torn journal tail: {exc.strerror}") from exc


def rewrite(path: Path, blob: bytes, *, fsync: bool) -> None:
    """Replace the journal file's content with `blob` atomically (temp file, fsync, rename,
    fsync of the directory)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        # created 0600: records carry lease tokens, never readable by others even briefly
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            write_all(fd, blob)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)  # a leftover .tmp from a crash keeps its old mode
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise write_error(exc, path, "compact the journal") from exc
    if fsync:
        fsync_dir(path.parent)


def move_aside(path: Path, run_id: str, kind: str, reason: str) -> Path:
    """Move the journal file to `<dir>/<kind>/<run_id>.<UTC time>.jsonl` with `reason` as its
    last line (an empty file when it did not exist); returns the new path. `kind` is one of
    `ASIDE_KINDS` (the caller checks it before touching the file)."""
    aside = path.parent / kind
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = aside / f"{run_id}.{stamp}{SUFFIX}"
    try:
        aside.mkdir(mode=0o700, exist_ok=True)
        os.replace(path, target)
    except FileNotFoundError:
        target.touch(mode=0o600)
    except OSError as exc:
        raise write_error(exc, path, "set the journal aside") from exc
    with contextlib.suppress(OSError):  # the reason is a courtesy: the move is the point
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            write_all(fd, lines.encode({"kind": "aside", "why": kind, "reason": reason}))
        finally:
            os.close(fd)
    fsync_dir(path.parent)
    fsync_dir(aside)
    return target
