"""The files a shard step with `file_pattern` shards, found as the Codemod CLI finds them.

The CLI walks `<target>/<shard target>` with the Rust `ignore` crate: `.gitignore` (also
outside a git repository, and parents' files), `.ignore`, `.git/info/exclude` and the global
git excludes honoured; hidden files included; links not followed; one override glob, the
`file_pattern` (gitignore syntax, braces allowed, `*` not crossing `/`). `rignore` is that same
crate, so the walk is the CLI's, not an imitation of it. Paths come back relative to the run's
target, sorted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import rignore


def eligible(root: Path, target: str, pattern: str) -> list[str]:
    """Files under `root/target` matching `pattern`, relative to `root`, sorted."""
    base = (root / target) if target not in ("", ".", "./") else root
    if not base.is_dir():
        raise FileNotFoundError(f"shard target '{target}' is not a directory of the workspace")
    walker = rignore.walk(base, ignore_hidden=False, read_ignore_files=True,
                          read_parents_ignores=True, read_git_ignore=True,
                          read_global_git_ignore=True, read_git_exclude=True,
                          require_git=False, follow_links=False, overrides=[pattern])
    root_abs = root.absolute()
    found: list[str] = []
    for entry in walker:
        path = Path(entry)
        if path.is_file() and not path.is_symlink():
            found.append(path.absolute().relative_to(root_abs).as_posix())
    return sorted(found)


def codeowners_text(root: Path) -> str | None:
    """The CODEOWNERS file the CLI reads: `.github/CODEOWNERS`, `CODEOWNERS`, then
    `docs/CODEOWNERS` under the run's target (GitHub's order); None when there is none."""
    for rel in (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"):
        path = root / rel
        if path.is_file():
            return path.read_text(encoding="utf-8", errors="replace")
    return None


def owner_of(text: str | None) -> Callable[[str], str]:
    """A function giving a file's team: the first owner of the last matching rule, with
    GitHub's matching (`codeowners`), or `unowned`."""
    from codeowners import CodeOwners

    owners = CodeOwners(text) if text else None

    def team(path: str) -> str:
        if owners is None:
            return "unowned"
        found = owners.of(path)
        return str(found[0][1]) if found else "unowned"

    return team
