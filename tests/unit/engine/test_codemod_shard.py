"""Upstream's built-in shard methods as Ferry computes them, against the outputs the Codemod CLI
1.18.3 gave on the same trees (the notes' project: 14 files under src/, a CODEOWNERS)."""

from __future__ import annotations

import pytest

from runner.engine.codemod.files import owner_of
from runner.engine.codemod.shard import directory_group, make_shards, team_name

FILES = ["src/api/a1.ts", "src/api/a2.ts", "src/api/a3.ts",
         *(f"src/components/C{i}.tsx" for i in range(1, 8)),
         "src/index.ts", "src/root2.tsx", "src/utils/u1.ts", "src/utils/u2.ts"]
CODEOWNERS = """\
*       @org/default-team
src/api/    @org/backend @org/api
*.tsx   @org/Frontend-Team
/src/utils/u1.ts @solo
docs/ @docs
"""


def _names(shards: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(s["name"], s["_meta_shard"], tuple(s["_meta_files"]),  # type: ignore[arg-type]
             s.get("directory", s.get("team"))) for s in shards]


def test_directory_shards_as_upstream() -> None:
    shards = make_shards(FILES, directory_group("./src"), field="directory", max_files=3,
                         min_size=2)
    assert [(n, i, len(f), d) for n, i, f, d in _names(shards)] == [
        (".-0", 0, 2, "."), ("api-0", 1, 3, "api"), ("components-0", 2, 3, "components"),
        ("components-1", 3, 4, "components"), ("utils-0", 4, 2, "utils")]
    assert shards[0]["_meta_files"] == ["src/index.ts", "src/root2.tsx"]
    assert list(shards[0]) == ["name", "_meta_shard", "_meta_files", "directory"]


def test_codeowner_shards_as_upstream() -> None:
    shards = make_shards(FILES, owner_of(CODEOWNERS), field="team", max_files=2, min_size=None)
    got = [(n, f, t) for n, _, f, t in _names(shards)]
    assert got == [
        ("org-frontend-team-0", ("src/components/C1.tsx", "src/components/C2.tsx"),
         "@org/Frontend-Team"),
        ("org-frontend-team-1", ("src/components/C3.tsx", "src/components/C4.tsx"),
         "@org/Frontend-Team"),
        ("org-frontend-team-2", ("src/components/C5.tsx", "src/components/C6.tsx"),
         "@org/Frontend-Team"),
        ("org-frontend-team-3", ("src/components/C7.tsx", "src/root2.tsx"),
         "@org/Frontend-Team"),
        ("org-backend-0", ("src/api/a1.ts", "src/api/a2.ts"), "@org/backend"),
        ("org-backend-1", ("src/api/a3.ts",), "@org/backend"),
        ("org-default-team-0", ("src/index.ts", "src/utils/u2.ts"), "@org/default-team"),
        ("solo-0", ("src/utils/u1.ts",), "@solo")]


def test_no_codeowners_means_unowned() -> None:
    shards = make_shards(FILES[:3], owner_of(None), field="team", max_files=5, min_size=None)
    assert [(s["name"], s["team"]) for s in shards] == [("unowned-0", "unowned")]


@pytest.mark.parametrize(("files", "size", "minimum", "cuts"), [
    (7, 3, 2, [3, 4]), (7, 3, None, [3, 3, 1]), (6, 3, 2, [3, 3]), (1, 3, 2, [1]),
    (4, 3, 2, [4]), (5, 2, 2, [2, 3]),
])
def test_cutting_and_the_minimum(files: int, size: int, minimum: int | None,
                                 cuts: list[int]) -> None:
    paths = [f"src/utils/f{i}.ts" for i in range(files)]
    shards = make_shards(paths, directory_group("src/utils"), field="directory",
                         max_files=size, min_size=minimum)
    print(files, size, minimum, [len(s["_meta_files"]) for s in shards])
    assert [len(s["_meta_files"]) for s in shards] == cuts
    # a lone root group is named shard-N, as upstream names it
    assert [s["name"] for s in shards] == [f"shard-{i}" for i in range(len(cuts))]


def test_reevaluation_keeps_names_and_continues_indexes() -> None:
    first = make_shards(FILES, directory_group("src"), field="directory", max_files=3,
                        min_size=2)
    later = [f for f in FILES if not f.startswith("src/utils/")] + [
        "src/components/C8.tsx", "src/hooks/h1.ts"]
    again = make_shards(later, directory_group("src"), field="directory", max_files=3,
                        min_size=2, previous=first)
    assert [s["name"] for s in again] == [".-0", "api-0", "components-0", "components-1",
                                          "components-2", "hooks-0"]
    assert [s["_meta_shard"] for s in again] == list(range(6))
    assert again[4]["_meta_files"] == ["src/components/C8.tsx"]


def test_team_names() -> None:
    assert team_name("@org/Frontend Team") == "org-frontend-team"
    assert team_name("dev@example.com") == "dev@example.com"


def test_max_files_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        make_shards(FILES, directory_group("src"), field="directory", max_files=0,
                    min_size=None)
