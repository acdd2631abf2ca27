"""Codemod runs over the control plane: the server requires the `codemod` label of a run with
codemod steps and checks their files at the commit; only a runner that has the Codemod CLI (and
so advertises the label) claims such a run, and runs it in the checkout, with the workflow's
directory as the codemod package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from tests.differential.codemod_support import PACKAGES, changes, git, make_project
from tests.helpers import wait_until
from tests.helpers.codemod import codemod_cli
from tests.integration.daemon.conftest import Server

SCRIPT = (PACKAGES / "js-astgrep-template" / "scripts" / "codemod.ts").read_text()
# js_file is relative to the workflow's directory, include to the target (the checkout)
WORKFLOW = """\
version: "1"
nodes:
  - id: apply
    name: Apply
    steps:
      - name: transform
        js-ast-grep: {js_file: scripts/codemod.ts, include: ["src/**/*.ts"]}
"""
FILES = {"codemods/var/workflow.yaml": WORKFLOW, "codemods/var/scripts/codemod.ts": SCRIPT,
         "src/a.ts": "var a = 1;\n", "src/b.ts": "let b = 2;\n"}


def test_server_requires_the_label_and_checks_the_package(server: Server) -> None:
    server.repo("cm", FILES)
    run_id = server.submit("cm", "codemods/var/workflow.yaml", labels=["linux"])
    assert sorted(server.info(run_id)["labels"]) == ["codemod", "linux"]
    server.repo("cm", {k: v for k, v in FILES.items() if not k.endswith("codemod.ts")})
    refused = requests.post(server.url + "/api/v1/runs", timeout=30,
                            headers=server.process.admin_headers,
                            json={"repo": "cm", "ref": "main",
                                  "workflow_path": "codemods/var/workflow.yaml",
                                  "params": {}, "labels": []})
    assert refused.status_code == 422, refused.text
    assert "JS file referenced in workflow not found: scripts/codemod.ts" in refused.text


def test_only_a_runner_with_the_engine_claims_codemod_runs(server: Server,
                                                            make_daemon: Any,
                                                            tmp_path: Path) -> None:
    binary = codemod_cli().path
    server.repo("cm", FILES)
    run_id = server.submit("cm", "codemods/var/workflow.yaml")
    without = make_daemon(server, "plain")
    without.register()
    # a runner without the engine (none named, none on PATH) never takes the run
    without.start("--once", "--idle-timeout", "3s",
                  env={"PATH": "/usr/bin:/bin", "FERRY_CODEMOD_BIN": ""})
    assert without.wait(60) == 0, without.log()[-2000:]
    assert server.info(run_id)["queue"] == "queued"
    able = make_daemon(server, "codemod")
    able.register()
    able.start("--once", env={"FERRY_CODEMOD_BIN": str(binary)})
    assert able.wait(120) == 0, able.log()[-3000:]
    wait_until(lambda: server.status(run_id) == "Completed", timeout=30)
    doc = server.run(run_id)
    task = next(t for t in doc["tasks"].values() if t["node_id"] == "apply")
    log = server.task_log(run_id, task["id"]).decode()
    assert log.splitlines() == ["Modified file: src/a.ts"]
    # the run's change, from the control plane, applies to the tree of the run's commit
    patch = server.admin_call("GET", f"/runs/{run_id}/patch").content
    assert server.admin_call("GET", f"/runs/{run_id}/patch",
                             params={"task": task["id"]}).content == patch
    work = make_project(tmp_path / "checkout", {k: v for k, v in FILES.items()})
    (tmp_path / "run.patch").write_bytes(patch)
    git(work, "apply", str(tmp_path / "run.patch"))
    assert (work / "src" / "a.ts").read_text() == "const a = 1\n"
    assert changes(work).count("diff --git") == 1
