"""Codemod steps through `ferry run` with the real Codemod CLI: what reaches the project and the
task's log, params and `${{ }}` in the steps' fields, dry runs, failures with one clear line,
the engine missing, shards feeding a matrix, and `commit:` checkpoints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.differential.codemod_support import (
    CLEAN_ENV,
    PACKAGES,
    PROJECT,
    REPO,
    changes,
    ferry_run,
    git,
    make_project,
)
from tests.helpers.codemod import codemod_cli


def _package(tmp: Path, workflow: str, scripts: dict[str, str] | None = None) -> Path:
    pkg = tmp / "pkg"
    (pkg / "scripts").mkdir(parents=True)
    (pkg / "scripts" / "codemod.ts").write_text(
        (PACKAGES / "js-astgrep-template" / "scripts" / "codemod.ts").read_text())
    for name, text in (scripts or {}).items():
        (pkg / "scripts" / name).write_text(text)
    (pkg / "workflow.yaml").write_text(workflow)
    return pkg / "workflow.yaml"


def _run(tmp: Path, workflow: str, *, scripts: dict[str, str] | None = None,
         binary: Path | None = None, **kwargs: object) -> tuple[int, str, str, Path]:
    wf = _package(tmp, workflow, scripts)
    project = make_project(tmp / "project", PROJECT)
    ran = ferry_run(binary or codemod_cli().path, wf, project, tmp / "home",
                    **kwargs)  # type: ignore[arg-type]
    return ran.exit, ran.diff, ran.output, project


JSSG = """\
version: "1"
params:
  schema:
    dir: {type: string, default: "src/a"}
nodes:
  - id: apply
    name: Apply
    steps:
      - name: transform ${{ params.dir }}
        js-ast-grep:
          js_file: scripts/codemod.ts
          language: typescript
          include: ["${{ params.dir }}/**/*.ts"]
"""


def test_step_changes_files_and_the_log_lists_them(tmp_path: Path) -> None:
    code, diff, out, _ = _run(tmp_path, JSSG)
    assert code == 0, out
    # ${{ params.dir }} resolved in include: only src/a changed
    assert diff.count("diff --git") == 1 and "src/a/one.ts" in diff
    assert "-var a = 1;" in diff and "+const a = 1" in diff
    assert "[apply] Modified file: src/a/one.ts" in out
    assert "Modified file: src/b/two.ts" not in out


def test_params_from_the_command_line_and_dry_run(tmp_path: Path) -> None:
    code, diff, out, _ = _run(tmp_path, JSSG, params={"dir": "src/b"}, dry_run=True)
    assert code == 0, out
    assert diff == ""  # nothing written
    assert "Would modify file (dry run): src/b/two.ts" in out
    assert "src/a/one.ts" not in out


def test_script_sees_params_and_matrix_values(tmp_path: Path) -> None:
    workflow = """\
version: "1"
nodes:
  - id: show
    name: Show
    strategy: {type: matrix, values: [{region: eu, n: 2}]}
    steps:
      - name: print
        js-ast-grep: {js_file: scripts/show.ts, include: ["src/a/one.ts"]}
"""
    show = ("export default async function (root: any, options: any) {\n"
            "  console.log('PARAMS ' + JSON.stringify(options.params) + ' MATRIX ' +\n"
            "              JSON.stringify(options.matrixValues));\n  return null;\n}\n")
    code, _diff, out, _ = _run(tmp_path, workflow, scripts={"show.ts": show},
                              params={"who": "me"})
    assert code == 0, out
    line = next(x for x in out.splitlines() if "PARAMS" in x)
    assert json.loads(line.split("PARAMS ")[1].split(" MATRIX")[0]) == {"who": "me"}
    assert json.loads(line.split("MATRIX ")[1]) == {"region": "eu", "n": 2}


def test_a_failing_codemod_fails_the_task_with_the_reason(tmp_path: Path) -> None:
    workflow = JSSG.replace("scripts/codemod.ts", "scripts/broken.ts")
    code, diff, out, _ = _run(tmp_path, workflow,
                              scripts={"broken.ts": "export default (root) => { oops here"})
    assert code == 1, out
    assert "step 'transform src/a' failed:" in out and "Syntax" in out
    assert diff == ""


def test_missing_engine_fails_with_one_line_saying_how_to_install(tmp_path: Path) -> None:
    code, _, out, _ = _run(tmp_path, JSSG, binary=tmp_path / "no-such-codemod")
    assert code == 2, out  # a named binary that is not there: a configuration error
    assert "FERRY_CODEMOD_BIN" in out and "not an executable" in out
    # none named and none on PATH: the step fails saying how to install it
    wf = _package(tmp_path / "again", JSSG)
    project = make_project(tmp_path / "again" / "project", PROJECT)
    home = tmp_path / "again" / "home"
    done = subprocess.run([sys.executable, "-m", "runner", "run", "-w", str(wf), "--workdir",
                           str(project)], cwd=REPO, capture_output=True, text=True,
                          env={**CLEAN_ENV, "HOME": str(home), "FERRY_HOME": str(home),
                               "FERRY_LIVE": "0", "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("'js-ast-grep' steps are run by the Codemod CLI, which is not installed: install "
            "it with `npm install --prefix /opt/codemod @codemod.com/cli-linux-x64-gnu@1.18.3`"
            in done.stdout)
    assert changes(project) == ""


def test_registry_codemod_unreachable_is_refused_clearly(tmp_path: Path) -> None:
    workflow = """\
version: "1"
nodes:
  - id: nested
    name: Nested
    steps:
      - name: published
        codemod: {source: "@ferry-tests/does-not-exist@1.0.0"}
"""
    code, _, out, _ = _run(tmp_path, workflow)
    assert code == 1, out
    assert ("codemod source '@ferry-tests/does-not-exist@1.0.0' is a registry package and the "
            "Codemod CLI could not fetch it") in out


def test_local_codemod_package_runs_nested(tmp_path: Path) -> None:
    nested = tmp_path / "pkg" / "nested"
    nested.mkdir(parents=True)
    for name in ("workflow.yaml", "codemod.yaml"):
        (nested / name).write_text((PACKAGES / "js-astgrep-template" / name).read_text())
    (nested / "scripts").mkdir()
    (nested / "scripts" / "codemod.ts").write_text(
        (PACKAGES / "js-astgrep-template" / "scripts" / "codemod.ts").read_text())
    workflow = f"""\
version: "1"
nodes:
  - id: outer
    name: Outer
    steps:
      - name: nested package
        codemod: {{source: "{nested}"}}
"""
    code, diff, out, _ = _run(tmp_path, workflow)
    assert code == 0, out
    assert "src/a/one.ts" in diff and "src/b/three.tsx" in diff


def test_shards_feed_a_matrix_scoped_to_their_files(tmp_path: Path) -> None:
    workflow = """\
version: "1"
nodes:
  - id: plan
    name: Plan
    steps:
      - name: shard
        shard:
          method: {type: directory, max_files_per_shard: "${{ params.size }}"}
          target: src
          output_state: shards
          file_pattern: "**/*.ts"
  - id: apply
    name: Apply
    depends_on: [plan]
    strategy: {type: matrix, from_state: shards}
    steps:
      - name: transform
        js-ast-grep: {js_file: scripts/codemod.ts}
"""
    code, diff, out, _project = _run(tmp_path, workflow, params={"size": "5"})
    assert code == 0, out
    assert "[plan] Evaluated 4 files into 3 shards" in out
    # a shard's task is named by its shard, not by its list of files
    assert "  [apply, name: a-0, directory: a] Modified file: src/a/one.ts" in out
    assert "  - Name a-0, 1 file, Directory a:" in out
    # each shard's task changed its own files only (b/three.tsx is in no shard)
    assert "src/b/three.tsx" not in diff and "src/a/one.ts" in diff and "src/b/two.ts" in diff
    assert "src/.hidden.ts" in diff and "src/gen.generated.ts" in diff


def test_commit_checkpoints(tmp_path: Path) -> None:
    workflow = JSSG.replace("""          include: ["${{ params.dir }}/**/*.ts"]
""", """          include: ["${{ params.dir }}/**/*.ts"]
        commit: {message: "codemod ${{ params.dir }}"}
      - name: nothing more
        run: "true"
        commit: {message: "empty"}
      - name: strict
        run: "true"
        commit: {message: "must change", allow_empty: false}
""")
    code, _, out, project = _run(tmp_path, workflow)
    assert code == 1, out
    assert "Commit checkpoint created: codemod src/a" in out
    assert "Commit checkpoint skipped (no changes): empty" in out
    assert "step 'strict' failed: No changes staged for commit" in out
    assert git(project, "log", "--format=%s").splitlines() == ["codemod src/a", "base"]


def test_pull_request_needs_a_control_plane(tmp_path: Path) -> None:
    workflow = JSSG.replace("    name: Apply\n", "    name: Apply\n    pull_request: "
                                                  "{title: t}\n")
    code, diff, out, _ = _run(tmp_path, workflow)
    assert code == 2, out
    assert ("'pull_request' pushes a branch to a control plane's repository: submit the run "
            "with 'ferry submit'") in out
    assert diff == ""


@pytest.mark.parametrize("name", ["js-astgrep-template"])
def test_validate_checks_the_package_files(name: str, tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    shutil.copytree(PACKAGES / name, pkg)
    argv = [sys.executable, "-m", "runner", "validate", "-w", str(pkg / "workflow.yaml")]
    ok = subprocess.run(argv, cwd=REPO, env=CLEAN_ENV, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout
    (pkg / "scripts" / "codemod.ts").unlink()
    bad = subprocess.run(argv, cwd=REPO, env=CLEAN_ENV, capture_output=True, text=True)
    assert bad.returncode == 2
    assert "JS file referenced in workflow not found: scripts/codemod.ts" in bad.stdout


def _ferry(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=REPO, timeout=120,
                          env={**CLEAN_ENV, "HOME": str(home), "FERRY_HOME": str(home / "ferry"),
                               "FERRY_LIVE": "0"}, capture_output=True, text=True)


def test_patch_of_a_sharded_run_applies_and_each_task_has_its_own(tmp_path: Path) -> None:
    workflow = """\
version: "1"
nodes:
  - id: plan
    name: Plan
    steps:
      - name: shard
        shard: {method: {type: directory, max_files_per_shard: 1}, target: src,
                output_state: shards, file_pattern: "{a,b}/*.ts"}
  - id: apply
    name: Apply
    depends_on: [plan]
    strategy: {type: matrix, from_state: shards}
    steps:
      - name: transform
        js-ast-grep: {js_file: scripts/codemod.ts}
  - id: after
    name: After
    depends_on: [apply]
    steps:
      - name: note
        run: echo done > NOTES.txt
"""
    code, diff, out, _ = _run(tmp_path, workflow)
    assert code == 0, out
    home = tmp_path / "home"
    run_id = json.loads(_ferry(home, "list", "--json").stdout)[0]["id"]
    combined = _ferry(home, "patch", "-i", run_id, "-o", str(tmp_path / "run.patch"))
    assert combined.returncode == 0, combined.stderr
    # applied to the project as it was, the patch gives what the run left
    fresh = make_project(tmp_path / "fresh", PROJECT)
    git(fresh, "apply", str(tmp_path / "run.patch"))
    assert changes(fresh) == diff and "NOTES.txt" in diff
    doc = json.loads(_ferry(home, "status", "-i", run_id, "--json").stdout)
    shard_tasks = [t for t in doc["tasks"].values()
                   if t["node_id"] == "apply" and not t.get("master")]
    assert len(shard_tasks) == 2
    for task in shard_tasks:
        one = _ferry(home, "patch", "-i", run_id, "-t", task["id"]).stdout
        touched = [line.split(" b/")[1] for line in one.splitlines()
                   if line.startswith("diff --git")]
        assert touched == task["matrix"]["_meta_files"], one  # its shard's file, only
    after = next(t for t in doc["tasks"].values() if t["node_id"] == "after")
    assert "NOTES.txt" in _ferry(home, "patch", "-i", run_id, "-t", after["id"]).stdout


CONTAINER = """\
version: "1"
nodes:
  - id: apply
    name: Apply
    runtime: {type: docker, image: IMAGE}
    steps:
      - name: transform
        js-ast-grep: {js_file: scripts/codemod.ts, include: ["src/**/*.ts"]}
      - name: where
        run: test -f /ferry-tools/codemod && echo "in the container"
"""


def test_codemod_step_runs_inside_the_task_container(tmp_path: Path) -> None:
    """The gnu build mounted read-only into a Debian 12 userland image (glibc 2.36): the same
    change as on the host, the log's paths relative to the workspace."""
    host_code, host_diff, host_out, _ = _run(tmp_path / "host", JSSG.replace(
        '"${{ params.dir }}/**/*.ts"', '"src/**/*.ts"'))
    assert host_code == 0, host_out
    code, diff, out, _ = _run(tmp_path / "box", CONTAINER.replace(
        "IMAGE", "ferry-test/debian-glibc:1"))
    assert code == 0, out
    assert diff == host_diff
    assert "[apply] Modified file: src/a/one.ts" in out and "in the container" in out


def test_an_image_without_glibc_fails_the_step_clearly(tmp_path: Path) -> None:
    code, diff, out, _ = _run(tmp_path, CONTAINER.replace("IMAGE", "ferry-test/busybox:1"))
    assert code == 1, out
    assert "step 'transform' failed:" in out
    assert diff == ""
