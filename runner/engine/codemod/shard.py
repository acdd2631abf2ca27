"""Upstream's built-in shard methods, computed by Ferry: `directory` and `codeowner`.

Eligible files are found as the Codemod CLI finds them (`files.eligible`); this module groups
and cuts them (codemod 1.18.3, `crates/core/src/shard.rs`, every case reproduced):
- `directory`: the group is the first path component below the shard target (files directly in
  it: group `.`); `codeowner`: the first owner of the last CODEOWNERS rule matching the file
  (GitHub's rules, `owners.CodeOwners`), `unowned` when none does.
- Groups in byte order, each group's files sorted and cut into runs of `max_files_per_shard`; a
  last run smaller than `min_shard_size` joins the one before it.
- Names `{group}-{i}` (`directory`; a lone `.` group gives `shard-{i}`) or `{team}-{i}` with
  the team lowercased, its leading `@` dropped and `/` and spaces turned into `-`.
- Each shard: `{name, _meta_shard (its index), _meta_files, directory | team}`.
Re-evaluated over shards already in state (a shard step run again): existing shards keep their
name and the files that are still eligible (a shard left with none is dropped), new files make
new shards whose index continues after the group's highest, `_meta_shard` is renumbered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

_INDEX = re.compile(r"-(\d+)$")


def directory_group(target: str) -> Callable[[str], str]:
    """The group of a file (relative to the run's target) for the `directory` method."""
    prefix = target.strip("/").removeprefix("./").strip("/")
    prefix = "" if prefix in ("", ".") else prefix + "/"

    def group(path: str) -> str:
        rest = path[len(prefix):] if prefix and path.startswith(prefix) else path
        head, sep, _ = rest.partition("/")
        return head if sep else "."

    return group


def team_name(team: str) -> str:
    """A team as shard names spell it: `@org/Frontend Team` -> `org-frontend-team`."""
    return team.removeprefix("@").replace("/", "-").replace(" ", "-").lower()


def _chunks(files: Sequence[str], size: int, minimum: int | None) -> list[list[str]]:
    runs = [list(files[i:i + size]) for i in range(0, len(files), size)]
    if minimum and len(runs) > 1 and len(runs[-1]) < minimum:
        runs[-2].extend(runs.pop())
    return runs


def make_shards(files: Iterable[str], group_of: Callable[[str], str], *, field: str,
                max_files: int, min_size: int | None,
                previous: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Shards of `files` (relative to the target), `field` being `directory` or `team`."""
    if max_files < 1:
        raise ValueError(f"max_files_per_shard must be at least 1 (got {max_files})")
    eligible = sorted(set(files))
    kept: list[dict[str, Any]] = []
    taken: set[str] = set()
    highest: dict[str, int] = {}
    alive = set(eligible)
    for old in previous:
        if not isinstance(old, Mapping) or not isinstance(old.get("name"), str):
            continue
        group = str(old.get(field, ""))
        match = _INDEX.search(old["name"])
        if match:
            highest[group] = max(highest.get(group, -1), int(match.group(1)))
        still = [f for f in old.get("_meta_files") or [] if f in alive and f not in taken]
        if still:
            taken.update(still)
            kept.append({**old, "_meta_files": still})
    groups: dict[str, list[str]] = {}
    for path in eligible:
        if path not in taken:
            groups.setdefault(group_of(path), []).append(path)
    lone_root = field == "directory" and not previous and list(groups) == ["."]
    fresh: list[dict[str, Any]] = []
    for group in sorted(groups, key=lambda g: g.encode()):
        label = team_name(group) if field == "team" else group
        start = highest.get(group, -1) + 1
        for i, chunk in enumerate(_chunks(groups[group], max_files, min_size)):
            name = f"shard-{start + i}" if lone_root else f"{label}-{start + i}"
            fresh.append({"name": name, "_meta_files": chunk, field: group})
    out = []
    for index, shard in enumerate([*kept, *fresh]):
        out.append({"name": shard["name"], "_meta_shard": index,
                    "_meta_files": shard["_meta_files"],
                    **{k: v for k, v in shard.items()
                       if k not in ("name", "_meta_shard", "_meta_files")}})
    return out
