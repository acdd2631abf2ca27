"""Codemod runs over the control plane: the server requires the `codemod` label of a run with
codemod steps and checks their files at the commit; only a runner that has the Codemod CLI (and
so advertises the label) claims such a run, and runs it in the checkout, with the workflow's
directory as the codemod package."""

from __future__ import annotations

import hashlib
import subprocess
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


PR_WORKFLOW = """\
version: "1"
nodes:
  - id: plan
    name: Plan
    steps:
      - name: shard
        shard: {method: {type: directory, max_files_per_shard: 5}, target: src,
                output_state: shards, file_pattern: "**/*.ts"}
  - id: apply
    name: Apply
    depends_on: [plan]
    strategy: {type: matrix, from_state: shards}
    branch_name: "cm-${{ matrix.name }}-${{ task.signature }}"
    pull_request: {title: "var to const (${{ matrix.name }})", body: "by Ferry"}
    steps:
      - name: transform
        js-ast-grep: {js_file: scripts/codemod.ts}
"""


def test_pull_request_nodes_push_one_branch_per_task(server: Server, make_daemon: Any) -> None:
    binary = codemod_cli().path
    files = {"cm/workflow.yaml": PR_WORKFLOW, "cm/scripts/codemod.ts": SCRIPT,
             "src/api/a.ts": "var a = 1;\n", "src/web/w.ts": "var w = 2;\n",
             "src/web/x.ts": "let x = 3;\n"}
    base = server.repo("cm", files)
    run_id = server.submit("cm", "cm/workflow.yaml")
    daemon = make_daemon(server, "codemod")
    daemon.register()
    daemon.start("--once", env={"FERRY_CODEMOD_BIN": str(binary)})
    assert daemon.wait(120) == 0, daemon.log()[-3000:]
    doc = server.run(run_id)
    assert doc["status"] == "Completed"
    prs = sorted(doc["pull_requests"], key=lambda p: p["branch"])
    assert [p.get("error") for p in prs] == [None, None], prs
    names = [p["branch"].rsplit("-", 1)[0] for p in prs]
    assert names == ["cm-api-0", "cm-web-0"]
    for pr in prs:
        sig = hashlib.sha256(pr["task"].encode()).hexdigest()[:8]
        assert pr["branch"].endswith(sig) and pr["body"] == "by Ferry"
    repo = server.repos / "cm.git"

    def show(ref: str, path: str) -> str:
        return subprocess.run(["git", "--git-dir", str(repo), "show", f"{ref}:{path}"],
                              capture_output=True, text=True, check=True).stdout

    api, web = prs
    # each branch: the run's commit plus that task's change only
    assert show(api["branch"], "src/api/a.ts") == "const a = 1\n"
    assert show(api["branch"], "src/web/w.ts") == "var w = 2;\n"
    assert show(web["branch"], "src/web/w.ts") == "const w = 2\n"
    assert show(web["branch"], "src/api/a.ts") == "var a = 1;\n"
    parent = subprocess.run(["git", "--git-dir", str(repo), "rev-parse", f"{web['branch']}^"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert parent == base
    assert show(web["commit"], "src/web/x.ts") == "let x = 3;\n"
    assert [p["title"] for p in prs] == ["var to const (api-0)", "var to const (web-0)"]


PLAIN = 'version: "1"\nnodes:\n  - id: hello\n    name: Hello\n    steps:\n      - run: echo hi\n'


def test_a_runner_registered_with_labels_and_the_engine_claims_both_kinds(
        server: Server, make_daemon: Any) -> None:
    """`ferry register --labels linux` where the CLI is found records `codemod` too, so the
    daemon's claims (which offer it) are not refused 403 by the registration's labels."""
    binary = str(codemod_cli().path)
    server.repo("cm", {**FILES, "plain.yaml": PLAIN})
    codemod_run = server.submit("cm", "codemods/var/workflow.yaml", labels=["linux"])
    plain_run = server.submit("cm", "plain.yaml", labels=["linux"])
    daemon = make_daemon(server, "labelled")
    daemon.env["FERRY_CODEMOD_BIN"] = binary
    registered = daemon.register("linux")
    assert "labels linux,codemod" in registered.stdout, registered.stdout
    daemon.start("--idle-timeout", "3s", env={"FERRY_CODEMOD_BIN": binary})
    assert daemon.wait(120) == 0, daemon.log()[-3000:]
    assert server.status(codemod_run) == "Completed", daemon.log()[-3000:]
    assert server.status(plain_run) == "Completed"


def test_engine_found_after_registering_without_its_label_is_not_offered(
        server: Server, make_daemon: Any) -> None:
    """Registered with --labels linux before the CLI was installed: the daemon says why it does
    not offer `codemod`, and goes on claiming what it may (it exited 6 at its first claim)."""
    binary = str(codemod_cli().path)
    server.repo("cm", {**FILES, "plain.yaml": PLAIN})
    plain_run = server.submit("cm", "plain.yaml", labels=["linux"])
    daemon = make_daemon(server, "before-cli")
    daemon.env.update({"FERRY_CODEMOD_BIN": "", "PATH": "/usr/bin:/bin"})
    daemon.register("linux")
    daemon.start("--once", env={"FERRY_CODEMOD_BIN": binary})
    assert daemon.wait(120) == 0, daemon.log()[-3000:]
    assert server.status(plain_run) == "Completed"
    warned = [e["msg"] for e in daemon.events() if "registered without the 'codemod'" in
              str(e.get("msg", ""))]
    assert warned and "--labels linux,codemod" in warned[0], daemon.log()[-3000:]
