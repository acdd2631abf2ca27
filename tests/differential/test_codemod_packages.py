"""Real codemod packages through the Codemod CLI and through Ferry on the same project: the
diffs they leave are identical, byte for byte (and neither engine fails). The set: the
js-astgrep and hybrid templates of `codemod init`, the older ast-grep template, two codemods
from public repositories (`tests/fixtures/codemods/README.md`), and a sharded run of the
js-astgrep template (a shard step by directory feeding a matrix of js-ast-grep tasks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.differential.codemod_support import PACKAGES, PROJECT, both, copy_package
from tests.helpers.codemod import codemod_cli

NAMES = ["js-astgrep-template", "hybrid-template", "ast-grep-template",
         "import-assertions-to-attributes", "nuxt-shallow-function-reactivity"]

SHARDED = """\
version: "1"
nodes:
  - id: plan
    name: Plan
    steps:
      - name: Shard by directory
        shard:
          method: {type: directory, max_files_per_shard: 2}
          target: src
          output_state: shards
          file_pattern: "**/*.{ts,tsx}"
  - id: apply
    name: Apply
    depends_on: [plan]
    strategy: {type: matrix, from_state: shards}
    steps:
      - name: transform
        js-ast-grep:
          js_file: scripts/codemod.ts
          language: tsx
"""


@pytest.mark.parametrize("name", NAMES)
def test_package_leaves_the_same_diff(name: str, tmp_path: Path) -> None:
    binary = codemod_cli().path
    reference, ferry = both(binary, PACKAGES / name, tmp_path)
    print(f"{name}: reference exit {reference.exit}, ferry exit {ferry.exit}, "
          f"{reference.diff.count('diff --git')} files changed")
    assert reference.exit == 0, reference.output
    assert ferry.exit == 0, ferry.output
    assert reference.diff, "the package changes nothing in the project: a useless case"
    assert ferry.diff == reference.diff


def test_sharded_run_leaves_the_same_diff(tmp_path: Path) -> None:
    binary = codemod_cli().path
    package = copy_package(PACKAGES / "js-astgrep-template", tmp_path / "pkg")
    (package / "sharded.yaml").write_text(SHARDED)
    files = {**PROJECT, **{f"src/c/f{i}.ts": f"var x{i} = {i};\n" for i in range(5)}}
    reference, ferry = both(binary, package, tmp_path / "runs", files, workflow="sharded.yaml")
    assert reference.exit == 0, reference.output
    assert ferry.exit == 0, ferry.output
    assert reference.diff.count("diff --git") >= 8
    assert ferry.diff == reference.diff


def test_dry_run_changes_nothing_in_either(tmp_path: Path) -> None:
    binary = codemod_cli().path
    reference, ferry = both(binary, PACKAGES / "js-astgrep-template", tmp_path, dry_run=True)
    assert (reference.exit, ferry.exit) == (0, 0), ferry.output
    assert reference.diff == ferry.diff == ""
    assert "Would modify file (dry run): src/a/one.ts" in ferry.output
