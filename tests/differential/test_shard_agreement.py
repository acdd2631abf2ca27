"""Shard steps through the Codemod CLI and through Ferry on the same synthetic trees: the shards
written to state are identical (names, order, files, directory/team), except where upstream's
CODEOWNERS matcher is not GitHub's (Ferry follows GitHub), pinned here case by case."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.differential.codemod_support import CLEAN_ENV, REPO, make_project, reference_state
from tests.helpers.codemod import codemod_cli

TREE = {
    ".gitignore": "src/gen/\n*.generated.ts\n",
    ".github/CODEOWNERS": "*       @org/default-team\nsrc/api/    @org/backend @org/api\n"
                          "*.tsx   @org/Frontend-Team\n/src/utils/u1.ts @solo\ndocs/ @docs\n",
    **{f"src/api/a{i}.ts": "x\n" for i in range(1, 4)},
    **{f"src/components/C{i}.tsx": "x\n" for i in range(1, 8)},
    "src/index.ts": "x\n", "src/root2.tsx": "x\n", "src/utils/u1.ts": "x\n",
    "src/utils/u2.ts": "x\n", "src/.hidden.ts": "x\n", "src/gen/g.ts": "x\n",
    "src/x.generated.ts": "x\n", "src/docs/d.ts": "x\n", "README.md": "x\n",
}

# name -> (method, target, file_pattern, pinned difference or None)
CASES: dict[str, tuple[str, str, str, str | None]] = {
    "directory": ("{type: directory, max_files_per_shard: 3, min_shard_size: 2}", "./src",
                  "**/*.{ts,tsx}", None),
    "directory-lone-root": ("{type: directory, max_files_per_shard: 1}", "src/utils", "*.ts",
                            None),
    "directory-no-minimum": ("{type: directory, max_files_per_shard: 2}", "src",
                             "components/*.tsx", None),
    "codeowner-github-agrees": ("{type: codeowner, max_files_per_shard: 2}", "src",
                                "{api,components,utils}/**", None),
    "codeowner-nested-dir-rule": ("{type: codeowner, max_files_per_shard: 5}", "src",
                                  "docs/*.ts", "codeowners-github"),
}
WORKFLOW = """\
version: "1"
nodes:
  - id: plan
    name: Plan
    steps:
      - name: shard
        shard:
          method: {method}
          target: "{target}"
          output_state: shards
          file_pattern: "{pattern}"
"""


def _ferry_state(workflow: Path, project: Path, home: Path) -> Any:
    done = subprocess.run([sys.executable, "-m", "runner", "run", "-w", str(workflow),
                           "--workdir", str(project), "--json"], cwd=REPO, timeout=120,
                          env={**CLEAN_ENV, "HOME": str(home), "FERRY_HOME": str(home)},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])
    return last["run"]["state"]["shards"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_shards_agree(name: str, tmp_path: Path) -> None:
    binary = codemod_cli().path
    method, target, pattern, pinned = CASES[name]
    text = WORKFLOW.format(method=method, target=target, pattern=pattern)
    workflow = tmp_path / "workflow.yaml"
    workflow.write_text(text)
    ref_project = make_project(tmp_path / "ref", TREE)
    home = tmp_path / "ref-home"
    home.mkdir()
    done = subprocess.run([str(binary), "--disable-analytics", "workflow", "run", "-w",
                           str(workflow), "-t", str(ref_project), "--no-interactive",
                           "--allow-dirty"], cwd=ref_project, timeout=120, capture_output=True,
                          text=True, env={**CLEAN_ENV, "HOME": str(home)})
    assert done.returncode == 0, done.stdout + done.stderr
    reference = reference_state(home)["shards"]
    ferry = _ferry_state(workflow, make_project(tmp_path / "ferry", TREE), tmp_path / "fh")
    print(name, json.dumps(ferry))
    if pinned is None:
        assert ferry == reference
        return
    # `docs/` is any directory named docs for GitHub; upstream matches it at the root only
    assert [s["team"] for s in reference] == ["@org/default-team"]  # type: ignore[index]
    assert [s["team"] for s in ferry] == ["@docs"]
    assert [s["_meta_files"] for s in ferry] == [s["_meta_files"]  # type: ignore[index]
                                                 for s in reference]


def test_pinned_differences_are_in_the_readme() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text[text.index("### Where Ferry differs"):]
    for *_, key in CASES.values():
        if key:
            assert f"| `{key}` |" in table, key
