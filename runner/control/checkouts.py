"""Checkouts reused by a daemon's task jobs: a distributed run's next task on this daemon gets
the checkout of the task before, reset to the run's commit, instead of a new extraction.

Extracting the commit's archive is most of what a short task costs (2,000 files: 0.3-0.6 s on
this project's machine, against 0.25 s for a 100-file codemod shard). A checkout is recorded
right after extraction (and the hand-over to the step user): every path's type, mode, inode,
size, mtime and ctime. When its task ends, the checkout is walked: a path not recorded is
removed, a file or link whose record differs (a write, chmod, rename or replacement changes the
ctime, which no step can set back) is extracted again from the archive, exactly as the first
extraction wrote it (`unpack`), and so is a recorded path that is gone;
directories get their mode back. The checkout is then the commit again, and waits (idle, in its
run's `workspaces/` folder) for the next task of that run; at most `keep` wait, the oldest is
removed first. Anything unexpected while resetting: the checkout is removed, the next task
extracts a fresh one. Checkouts whose workflow makes git commits (`commit:`, a repository in
the workspace) are never reused.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from runner.control.unpack import Archive, member_path
from runner.errors import PermanentError

log = logging.getLogger("ferry.daemon")

MAX_MEMBERS = 200_000
"""Bigger archives are not reused: their record would cost more memory than it saves time."""

Record = dict[str, tuple[int, ...]]


def _signature(st: os.stat_result) -> tuple[int, ...]:
    if stat.S_ISDIR(st.st_mode):  # entries come and go: the children say what changed
        return (st.st_mode,)
    return (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def record(root: Path) -> Record:
    """Every path under `root` ("" is root itself) with what a change would alter."""
    out: Record = {"": _signature(os.lstat(root))}
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(root / rel if rel else root) as entries:
            for entry in entries:
                path = f"{rel}/{entry.name}" if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                out[path] = _signature(st)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(path)
    return out


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _changes(root: Path, recorded: Record) -> set[str]:
    """Remove what the task added; the recorded paths to extract again (changed or gone)."""
    again: set[str] = set()
    seen: set[str] = set()
    stack = [""]
    root_mode = recorded[""][0]
    if os.lstat(root).st_mode != root_mode:
        os.chmod(root, stat.S_IMODE(root_mode))
    while stack:
        rel = stack.pop()
        seen.add(rel)
        with os.scandir(root / rel if rel else root) as entries:
            listed = list(entries)
        for entry in listed:
            path = f"{rel}/{entry.name}" if rel else entry.name
            want = recorded.get(path)
            st = entry.stat(follow_symlinks=False)
            if want is None or stat.S_IFMT(st.st_mode) != stat.S_IFMT(want[0]):
                _remove(Path(entry.path))
                continue
            if stat.S_ISDIR(st.st_mode):
                if st.st_mode != want[0]:
                    os.chmod(entry.path, stat.S_IMODE(want[0]))
                stack.append(path)
                continue
            seen.add(path)
            if _signature(st) != want:
                Path(entry.path).unlink()
                again.add(path)
    # gone (a removed directory: it and everything recorded in it)
    again.update(path for path in recorded if path not in seen)
    return again


@dataclass
class _Entry:
    path: Path
    archive: Path
    members: dict[str, tarfile.TarInfo]
    recorded: Record
    owner: tuple[int, int] | None


class Checkouts:
    """Idle checkouts by run folder, reset to their commit (thread-safe)."""

    def __init__(self, keep: int, wait: float = 30.0) -> None:
        self.keep = keep
        self.wait = wait
        """How long `take` waits for a checkout of its run being reset (`release`)."""
        self._idle: OrderedDict[Path, _Entry] = OrderedDict()
        self._busy: dict[Path, _Entry] = {}
        self._resetting: dict[Path, int] = {}  # run folder -> checkouts being given back
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def take(self, run_dir: Path, dest: Path) -> bool:
        """Move an idle checkout of `run_dir`'s run to `dest` (missing); False: none. When one
        of the run's checkouts is being reset, waits for it (a reset takes tens of ms, a new
        extraction hundreds)."""
        with self._changed:
            self._changed.wait_for(lambda: self._resetting.get(run_dir, 0) == 0 or any(
                k.parent.parent == run_dir for k in self._idle), timeout=self.wait)
            idle = next((k for k in self._idle if k.parent.parent == run_dir), None)
            entry = self._idle.pop(idle) if idle is not None else None
        if entry is None:
            return False
        try:
            os.rename(entry.path, dest)
        except OSError as exc:  # removed meanwhile (retention): extract a new one
            log.debug("idle checkout %s unusable: %s", entry.path, exc)
            shutil.rmtree(entry.path, ignore_errors=True)
            return False
        entry.path = dest
        with self._lock:
            self._busy[dest] = entry
        return True

    def extracted(self, dest: Path, archive: Path, members: list[tarfile.TarInfo],
                  owner: tuple[int, int] | None) -> None:
        """A checkout just extracted (and handed over) at `dest`: record it for reuse."""
        if len(members) > MAX_MEMBERS:
            return
        entry = _Entry(dest, archive, {member_path(m): m for m in members}, record(dest),
                       owner)
        with self._lock:
            self._busy[dest] = entry

    def release(self, dest: Path) -> threading.Thread:
        """`give_back` on a thread of its own: the job's slot is free while its checkout is
        reset, and the run's next task waits in `take` only for what is left of the reset."""
        run_dir = dest.parent.parent
        with self._changed:
            self._resetting[run_dir] = self._resetting.get(run_dir, 0) + 1

        def reset() -> None:
            try:
                self.give_back(dest)
            except Exception:  # a bug here must not lose the count: the next take would wait
                log.exception("task checkout %s could not be given back", dest)
                shutil.rmtree(dest, ignore_errors=True)
            finally:
                with self._changed:
                    left = self._resetting[run_dir] - 1
                    if left:
                        self._resetting[run_dir] = left
                    else:
                        del self._resetting[run_dir]
                    self._changed.notify_all()

        thread = threading.Thread(target=reset, name=f"ferry-reset-{dest.name[:8]}",
                                  daemon=True)
        thread.start()
        return thread

    def give_back(self, dest: Path) -> None:
        """The job at `dest` is over: a recorded task checkout is reset and kept idle, any
        other checkout (a whole run's, or one that cannot be reset) is removed."""
        with self._lock:
            entry = self._busy.pop(dest, None)
        if entry is None or not dest.is_dir() or self.keep < 1:
            shutil.rmtree(dest, ignore_errors=True)
            return
        idle = dest.parent / f".idle-{uuid.uuid4().hex}"
        try:
            _reset(entry)
            os.rename(dest, idle)
        except (OSError, PermanentError) as exc:
            log.warning("task checkout %s could not be reset (%s): removed; the next task "
                        "extracts a fresh one", dest, exc)
            shutil.rmtree(dest, ignore_errors=True)
            return
        entry.path = idle
        evicted: list[Path] = []
        with self._changed:
            self._idle[idle] = entry
            while len(self._idle) > self.keep:
                evicted.append(self._idle.popitem(last=False)[0])
            self._changed.notify_all()
        for path in evicted:
            shutil.rmtree(path, ignore_errors=True)

    def settle(self, timeout: float) -> bool:
        """Wait until no checkout is being reset (`release`); False when some still are."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._resetting, timeout=timeout)

    def clear(self) -> None:
        """Remove every idle checkout."""
        with self._lock:
            paths = list(self._idle)
            self._idle.clear()
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)


def _reset(entry: _Entry) -> None:
    """Make the checkout at `entry.path` what was recorded (the commit) again."""
    root = entry.path
    again = _changes(root, entry.recorded)
    if not again:
        return
    wanted = sorted((entry.members[p] for p in again if p in entry.members),
                    key=lambda m: m.offset)
    # directories the extraction made without an archive member of their own
    for path in sorted(p for p in again if p not in entry.members):
        if not stat.S_ISDIR(entry.recorded[path][0]):
            raise OSError(f"'{path}' was not extracted from the archive: cannot restore it")
        os.makedirs(root / path, exist_ok=True)
        os.chmod(root / path, stat.S_IMODE(entry.recorded[path][0]))
    Archive.read(entry.archive, list(entry.members.values())).write(root, wanted)
    if entry.owner is not None:
        uid, gid = entry.owner
        for path in again:
            os.chown(root / path, uid, gid, follow_symlinks=False)
    for path in again:  # what they are now (the rest did not change)
        entry.recorded[path] = _signature(os.lstat(root / path))
