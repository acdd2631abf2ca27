"""README "Worked example: a sharded codemod on a control plane", run as written: a project
with its codemod package, served to the stub (real HTTP) as repository "app"; two `ferry daemon`
processes that find the Codemod CLI on PATH; `ferry submit --distributed`, `ferry status`,
`ferry patch -o run.patch`; `git apply` of the combined patch. Both runners must have executed
shards, and the patch must leave exactly the diff the reference engine's own `workflow run`
of the same package leaves on the same project."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.differential.codemod_support import (
    PACKAGES,
    changes,
    git,
    make_project,
    reference_run,
)
from tests.helpers import wait_until
from tests.helpers.codemod import codemod_cli
from tests.integration.daemon.conftest import ADMIN, REPO_ROOT, Server

# the README's workflow, byte for byte
WORKFLOW = """\
version: "1"
nodes:
  - id: plan
    name: Plan
    steps:
      - name: Shard by directory
        shard:
          method: {type: directory, max_files_per_shard: 50}
          target: src
          output_state: shards
          file_pattern: "**/*.ts"
  - id: apply
    name: Apply
    depends_on: [plan]
    strategy: {type: matrix, from_state: shards}
    steps:
      - name: var to const
        js-ast-grep: {js_file: scripts/codemod.ts, language: typescript}
"""
PACKAGE = "codemods/var-to-const"
DIRS = ("api", "billing", "core", "search", "ui", "web")


def project() -> dict[str, str]:
    """Six directories of TypeScript (six shards), some files with nothing to change."""
    files = {f"{PACKAGE}/workflow.yaml": WORKFLOW,
             f"{PACKAGE}/scripts/codemod.ts":
                 (PACKAGES / "js-astgrep-template" / "scripts" / "codemod.ts").read_text(),
             "README.md": "# app\n", ".gitignore": "dist/\n"}
    for d in DIRS:
        for i in range(3):
            files[f"src/{d}/m{i}.ts"] = (f"var {d}{i} = {i};\nexport const f{i} = () => {d}{i};\n"
                                         if i < 2 else f"export const {d} = '{d}';\n")
    return files


def ferry(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A `ferry` command as the README types it."""
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _runners_of(server: Server, run_id: str) -> dict[str, set[str]]:
    """Task id -> the runner ids whose task writers (`<runner>/<task>/a<n>`) wrote to it."""
    doc = server.admin_call("GET", f"/runs/{run_id}", params={"history": "true"}).json()
    out: dict[str, set[str]] = {}
    for diff in doc["history"]:
        parts = diff["writer"].split("/")
        if len(parts) == 3:
            out.setdefault(parts[1], set()).add(parts[0])
    return out


def test_the_readme_worked_example_shards_over_two_runners(server: Server, make_daemon: Any,
                                                           tmp_path: Path) -> None:
    binary = codemod_cli().path
    files = project()
    server.repo("app", files)
    # two runners, each with the Codemod CLI on PATH (no FERRY_CODEMOD_BIN)
    path = f"{binary.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    daemons = [make_daemon(server, name) for name in ("r1", "r2")]
    for daemon in daemons:
        daemon.register()
        daemon.start(env={"PATH": path, "FERRY_CODEMOD_BIN": ""})
    wait_until(lambda: all(d.logged("daemon ready") for d in daemons), timeout=60,
               message="both daemons ready")
    for daemon in daemons:
        assert daemon.logged("daemon ready")[0]["labels"] == "codemod"
    env = {**os.environ, "FERRY_SERVER": server.url, "FERRY_TOKEN": ADMIN}
    env.pop("FERRY_HOME", None)
    env["FERRY_HOME"] = str(tmp_path / "user")
    submitted = ferry("submit", "--repo", "app", "--ref", "main", "-w",
                      f"{PACKAGE}/workflow.yaml", "--distributed", env=env)
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    try:
        wait_until(lambda: server.status(run_id) in ("Completed", "Failed"), timeout=180,
                   message="the run to end")
    finally:
        for daemon in daemons:
            daemon.signal(signal.SIGTERM)
        for daemon in daemons:
            daemon.wait(60)
    assert server.status(run_id) == "Completed", server.run(run_id)
    status = ferry("status", "-i", run_id, env=env)
    assert status.returncode == 0, status.stderr
    assert all(f"name: {d}-0" in status.stdout for d in DIRS), status.stdout
    tasks = {t["id"]: t for t in server.run(run_id)["tasks"].values() if not t.get("master")}
    shards = [t for t in tasks.values() if t["node_id"] == "apply"]
    assert sorted(t["matrix"]["name"] for t in shards) == [f"{d}-0" for d in DIRS]
    runners = _runners_of(server, run_id)
    shard_runners = set().union(*(runners[t["id"]] for t in shards))
    print(f"shards by runner: { {t['matrix']['name']: sorted(runners[t['id']]) for t in shards} }")
    assert len(shard_runners) == 2, f"one runner executed every shard: {runners}"
    # the combined patch, downloaded as the README does, applied to the project
    out = tmp_path / "run.patch"
    patched = ferry("patch", "-i", run_id, "-o", str(out), env=env)
    assert patched.returncode == 0, patched.stderr
    assert out.read_bytes().count(b"diff --git") == 2 * len(DIRS)
    app = make_project(tmp_path / "app", files)
    git(app, "apply", str(out))
    ours = changes(app)
    # the reference engine's own run of the same package on the same project
    reference = make_project(tmp_path / "reference", files)
    ran = reference_run(binary, reference / PACKAGE / "workflow.yaml", reference,
                        tmp_path / "reference-home")
    assert ran.exit == 0, ran.output
    assert ours == ran.diff
    assert "const api0 = 0" in (app / "src" / "api" / "m0.ts").read_text()
