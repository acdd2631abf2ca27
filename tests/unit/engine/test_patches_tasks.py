"""The patches of a distributed run's tasks: each task runs in its own checkout of the commit and
its patch is exactly its change to that commit (real git, real files)."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from runner.engine.patches import PatchKeeper
from runner.engine.task_patches import TaskPatchKeeper
from runner.errors import StateError

FILES = {
    ".gitignore": "gen/\n",
    "gen/committed.ts": "var g = 1;\n",  # in the commit although ignored
    "src/a.ts": "var a = 1;\n",
    "src/b.ts": "var b = 2;\n",
    'src/we"ird na\\me é.ts': "var w = 3;\n",
    "bin/run.sh": "#!/bin/sh\n",
}
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def checkout(root: Path) -> Path:
    """A fresh copy of the commit, as a task job gets it."""
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    os.chmod(root / "bin" / "run.sh", 0o755)
    return root


def apply(patches: list[str], root: Path) -> None:
    for n, text in enumerate(patches):
        (root.parent / f"{n}.patch").write_text(text)
        subprocess.run(["git", "apply", "--unsafe-paths", str(root.parent / f"{n}.patch")],
                       cwd=root, check=True, capture_output=True)


def test_each_task_patch_is_its_own_change_to_the_commit(tmp_path: Path) -> None:
    snapshot = tmp_path / "run" / "snapshot.git"
    one, two = checkout(tmp_path / "one"), checkout(tmp_path / "two")
    keepers = [TaskPatchKeeper(snapshot, one, ENV, "t1"),
               TaskPatchKeeper(snapshot, two, ENV, "t2")]
    started = [threading.Thread(target=k.begin) for k in keepers]  # side by side
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(30)
    (one / "src" / "a.ts").write_text("const a = 1\n")
    (one / "gen" / "committed.ts").write_text("const g = 1\n")
    (two / "src" / "b.ts").write_text("const b = 2\n")
    (two / 'src/we"ird na\\me é.ts').write_text("const w = 3\n")
    first = keepers[0].take(["src/a.ts", "gen/committed.ts"])
    second = keepers[1].take(["src/b.ts", 'src/we"ird na\\me é.ts'])
    for keeper in keepers:
        keeper.end()
    assert first.count("diff --git") == 2 and "src/b.ts" not in first
    assert second.count("diff --git") == 2 and "src/a.ts" not in second
    # a committed file that .gitignore matches is a change to it, not a new file
    assert "new file" not in first + second
    target = checkout(tmp_path / "target")
    apply([second, first], target)
    assert (target / "src" / "a.ts").read_text() == "const a = 1\n"
    assert (target / "src" / "b.ts").read_text() == "const b = 2\n"
    assert (target / "gen" / "committed.ts").read_text() == "const g = 1\n"
    assert (target / 'src/we"ird na\\me é.ts').read_text() == "const w = 3\n"
    assert not list((snapshot / "tasks").iterdir())  # their indexes went with them


def test_a_shell_task_patch_holds_every_change_of_its_checkout(tmp_path: Path) -> None:
    snapshot = tmp_path / "run" / "snapshot.git"
    first = checkout(tmp_path / "first")
    TaskPatchKeeper(snapshot, first, ENV, "t0").begin()  # the run's base, from this one
    work = checkout(tmp_path / "work")
    keeper = TaskPatchKeeper(snapshot, work, ENV, "t1")
    keeper.begin()
    (work / "src" / "b.ts").unlink()
    (work / "src" / "new.ts").write_text("new\n")
    os.chmod(work / "bin" / "run.sh", 0o644)
    text = keeper.take(None)
    assert "deleted file mode 100644" in text and "new file mode 100644" in text
    assert "old mode 100755" in text
    target = checkout(tmp_path / "target")
    apply([text], target)
    assert not (target / "src" / "b.ts").exists()
    assert (target / "src" / "new.ts").read_text() == "new\n"
    # a task that changed nothing has no patch
    idle = TaskPatchKeeper(snapshot, checkout(tmp_path / "idle"), ENV, "t2")
    idle.begin()
    assert idle.take(None) == ""


def test_a_whole_run_on_a_checkout_patches_committed_ignored_files_as_changes(
        tmp_path: Path) -> None:
    """A claimed run taken whole (one checkout, `PatchKeeper(checkout=True)`): its base is every
    file of the commit, as a task's is, so a codemod changing a committed file that .gitignore
    matches gives a patch that applies to the commit (with `git add -A` as the base, the file
    was not in it and the patch said "new file", which `git apply` refuses on the commit)."""
    work = checkout(tmp_path / "work")
    keeper = PatchKeeper(tmp_path / "run" / "snapshot.git", work, ENV, checkout=True)
    keeper.begin()
    (work / "gen" / "committed.ts").write_text("const g = 1\n")
    (work / "src" / "a.ts").write_text("const a = 1\n")
    text = keeper.take(["gen/committed.ts", "src/a.ts"])
    assert text.count("diff --git") == 2 and "new file" not in text
    (work / "bin" / "run.sh").unlink()
    shell = keeper.take(None)  # a shell task's change: everything not yet in a patch
    assert "deleted file mode 100755" in shell and "committed.ts" not in shell
    target = checkout(tmp_path / "target")
    apply([text, shell], target)
    assert (target / "gen" / "committed.ts").read_text() == "const g = 1\n"
    assert (target / "src" / "a.ts").read_text() == "const a = 1\n"
    assert not (target / "bin" / "run.sh").exists()


def _change(root: Path) -> list[str]:
    """Every kind of change a codemod can report: edit, new file, deletion, binary, mode."""
    (root / "src" / "a.ts").write_text("const a = 1\n")
    (root / "src" / "new.ts").write_text("export const fresh = true\n")
    (root / "src" / "b.ts").unlink()
    (root / "src" / "logo.bin").write_bytes(bytes(range(256)) * 4)
    os.chmod(root / "bin" / "run.sh", 0o644)
    return ["src/a.ts", "src/new.ts", "src/b.ts", "src/logo.bin", "bin/run.sh"]


def test_a_reported_task_patch_is_what_staging_every_change_gives(tmp_path: Path) -> None:
    """The first take of reported files (`git diff-files`, no object written) gives the same
    text as staging the whole checkout and diffing trees, and it applies to the commit."""
    snapshot = tmp_path / "run" / "snapshot.git"
    one, two = checkout(tmp_path / "one"), checkout(tmp_path / "two")
    reported = TaskPatchKeeper(snapshot, one, ENV, "t1")
    staged = TaskPatchKeeper(snapshot, two, ENV, "t2")
    reported.begin()
    staged.begin()
    paths = _change(one)
    _change(two)
    text = reported.take(paths)
    assert text == staged.take(None)
    assert "new file mode" in text and "deleted file mode" in text and "GIT binary patch" in text
    with pytest.raises(StateError, match="taken already"):
        reported.take(paths)
    target = checkout(tmp_path / "target")
    apply([text], target)
    assert (target / "src" / "new.ts").read_text() == "export const fresh = true\n"
    assert not (target / "src" / "b.ts").exists()
    assert (target / "src" / "logo.bin").read_bytes() == bytes(range(256)) * 4


@pytest.mark.parametrize("keeper", ["task", "run"])
def test_reported_paths_are_names_not_patterns(tmp_path: Path, keeper: str) -> None:
    """`src/[id].tsx` (a Next.js route) reported by the CLI: only that file is in the patch,
    not `src/i.tsx`, which the pattern `[id]` matches and another task changed."""
    work = checkout(tmp_path / "work")
    (work / "src" / "[id].tsx").write_text("var route;\n")
    (work / "src" / "i.tsx").write_text("var i;\n")
    snapshot = tmp_path / "run" / "snapshot.git"
    patches = (TaskPatchKeeper(snapshot, work, ENV, "t1") if keeper == "task" else
               PatchKeeper(snapshot, work, ENV, checkout=True))
    patches.begin()
    (work / "src" / "[id].tsx").write_text("const route = 1\n")
    (work / "src" / "i.tsx").write_text("const i = 1\n")
    text = patches.take(["src/[id].tsx"])
    assert "src/[id].tsx" in text and "src/i.tsx" not in text
