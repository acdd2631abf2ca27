"""Upstream's language through the real CLI: warnings printed and kept, unknown keys that stop a
run, --strict, params checked before anything starts, skipped steps in status, re-running the
failed tasks of a Failed run, and `-c CONFIG`'s container policy honoured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.local.conftest import Ferry


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


WARNED = """version: "1"
nodes:
  - id: a
    name: A
    description: fine
    notes: documentation only
    steps:
      - {name: s, run: echo ran}
"""


def test_warnings_are_printed_kept_and_shown_and_strict_refuses(ferry: Ferry,
                                                               tmp_path: Path) -> None:
    wf = _write(tmp_path, "warned.yaml", WARNED)
    proc = ferry("run", "-w", wf)
    assert proc.returncode == 0, proc.stderr
    warning = "Warning at nodes[0].notes: unknown key 'notes' (line 6)"
    assert f"ferry: {warning}" in proc.stderr.splitlines()
    run_id = ferry.run_id(proc.stdout)
    assert ferry.doc(run_id)["warnings"] == [warning]
    status = ferry("status", "-i", run_id)
    assert "Warning: nodes[0].notes: unknown key 'notes' (line 6)" in status.stdout
    logs = ferry("logs", "-i", run_id)
    assert logs.stdout.splitlines() == [f"[run] {warning}", "[a] ran"]
    strict = ferry("run", "-w", wf, "--strict")
    assert strict.returncode == 2
    assert "Error at nodes[0].notes: unknown key 'notes' (line 6)" in strict.stderr
    assert "ran" not in strict.stdout


# Warnings of three kinds `ferry validate` gives, each as the node line that raises it.
STRICT_CASES = {
    "unknown key": ("notes: documentation only", "unknown key 'notes'"),
    "dependency listed twice": ("depends_on: [z, z]", "'z' is listed twice"),
    "empty matrix value": ("strategy: {type: matrix, values: [{}]}", "a matrix value is empty"),
}


@pytest.mark.parametrize("kind", sorted(STRICT_CASES))
def test_strict_refuses_warnings_of_every_kind(ferry: Ferry, tmp_path: Path, kind: str) -> None:
    """README: `--strict` refuses every warning (not only unknown keys), for validate and run;
    without it each is a warning and the run goes on."""
    key, message = STRICT_CASES[kind]
    wf = _write(tmp_path, "w.yaml", f"""version: "1"
nodes:
  - id: z
    steps: [{{run: "true"}}]
  - id: a
    {key}
    steps: [{{run: "echo ran"}}]
""")
    rows = []
    for args in (("validate", "-w", wf), ("run", "-w", wf)):
        loose, strict = ferry(*args), ferry(*args, "--strict")
        rows.append((kind, args[0], loose.returncode, strict.returncode))
        assert loose.returncode == 0, (args, loose.stderr)
        assert strict.returncode == 2, (args, strict.stdout, strict.stderr)
        said = strict.stdout + strict.stderr
        assert message in said and "Error at" in said, said
        assert "ran" not in strict.stdout
    print("\n".join(f"{k:24} {c:8} plain exit {a}, --strict exit {b}" for k, c, a, b in rows))


@pytest.mark.parametrize("key", ["continue-on-error: true", "if: \"false\"", "retry: {count: 2}",
                                 "timeout-minutes: 5"])
def test_a_key_that_would_change_what_runs_stops_the_run(ferry: Ferry, tmp_path: Path,
                                                         key: str) -> None:
    wf = _write(tmp_path, "unknown.yaml", f"""version: "1"
nodes:
  - id: a
    {key}
    steps:
      - {{name: s, run: echo ran}}
""")
    assert ferry("validate", "-w", wf).returncode == 0  # validate warns
    assert ferry("list").returncode == 0
    before = ferry.db_dump()
    proc = ferry("run", "-w", wf)
    assert proc.returncode == 2
    assert "Ferry does not know what it does, so it does not run the workflow" in proc.stderr
    assert ferry.db_dump() == before


PARAMS = """version: "1"
params:
  schema:
    env: {type: string, oneOf: [{type: string, enum: [dev, prod]}], default: dev}
    count: {type: number}
    token: {type: string, secret: true}
nodes:
  - id: a
    name: A
    steps:
      - {name: show, run: 'echo "env=${{ params.env }} count=${{ params.count }}"'}
      - {name: prod only, if: 'params.env == "prod"', run: echo deploying}
"""


def test_params_are_checked_before_anything_starts(ferry: Ferry, tmp_path: Path) -> None:
    wf = _write(tmp_path, "params.yaml", PARAMS)
    assert ferry("list").returncode == 0
    before = ferry.db_dump()
    proc = ferry("run", "-w", wf, "--param", "env=test", "--param", "count=many",
                 "--param", "extra=1")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "ferry: error: param 'env' is \"test\", not one of: dev, prod",
        "ferry: error: param 'count': \"many\" is not a valid number",
        "ferry: error: param 'extra' is not declared in params.schema (declared: env, count, "
        "token)",
        "ferry: error: param 'token' is required (it has no default): give --param "
        "token=VALUE",
    ]
    assert ferry.db_dump() == before


def test_defaults_secret_masking_and_skipped_steps(ferry: Ferry, tmp_path: Path) -> None:
    wf = _write(tmp_path, "params.yaml", PARAMS)
    proc = ferry("run", "-w", wf, "--param", "count=3", "--param", "token=s3cr3t-value")
    assert proc.returncode == 0, proc.stderr
    assert "  [a] env=dev count=3" in proc.stdout
    assert "step 2 'prod only' skipped: condition 'params.env == \"prod\"' is false" in proc.stdout
    run_id = ferry.run_id(proc.stdout)
    doc = ferry.doc(run_id)
    assert doc["params"] == {"env": "dev", "count": 3, "token": "***"}
    assert "s3cr3t" not in json.dumps(doc) and "s3cr3t" not in ferry("status", "-i", run_id).stdout
    task = ferry.by_node(doc)["a"][0]
    assert task["skipped"] == [{"step": 1, "name": "prod only", "if": 'params.env == "prod"'}]
    assert "[skipped: 'prod only']" in ferry("status", "-i", run_id).stdout


FLAKY = """version: "1"
nodes:
  - {id: ok, name: Ok, steps: [{name: s, run: 'echo ok >> ok.log'}]}
  - id: flaky
    name: Flaky
    depends_on: [ok]
    steps: [{name: s, run: 'echo try >> flaky.log; test -f fixed'}]
  - {id: after, name: After, depends_on: [flaky], steps: [{name: s, run: 'echo after'}]}
"""


def test_resume_retry_failed_reruns_what_failed(ferry: Ferry, tmp_path: Path) -> None:
    wf = _write(tmp_path, "flaky.yaml", FLAKY.replace("  - id: flaky\n",
                                                      "  - id: flaky\n    notes: flaky\n"))
    proc = ferry("run", "-w", wf)
    assert proc.returncode == 1
    warning = "Warning at nodes[1].notes: unknown key 'notes' (line 5)"
    assert proc.stderr.splitlines() == [f"ferry: {warning}"]
    run_id = ferry.run_id(proc.stdout)
    plain = ferry("resume", "-i", run_id)
    assert plain.returncode == 2 and "use --retry-failed" in plain.stderr
    (ferry.workdir / "fixed").write_text("")
    again = ferry("resume", "-i", run_id, "--retry-failed")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stderr.splitlines() == [f"ferry: {warning}"]  # resume says it again
    assert "Running 2 failed or blocked tasks again" in again.stdout
    assert (ferry.workdir / "ok.log").read_text() == "ok\n"
    assert (ferry.workdir / "flaky.log").read_text() == "try\ntry\n"
    doc = ferry.doc(run_id)
    assert doc["status"] == "Completed"
    assert {n: t[0]["status"] for n, t in ferry.by_node(doc).items()} == {
        "ok": "Completed", "flaky": "Completed", "after": "Completed"}
    done = ferry("resume", "-i", run_id, "--retry-failed")
    assert done.returncode == 2 and "is Completed" in done.stderr


@pytest.mark.docker
def test_run_config_container_policy_is_honoured(ferry: Ferry, tmp_path: Path,
                                                 docker_image: str) -> None:
    wf = _write(tmp_path, "priv.yaml", f"""version: "1"
nodes:
  - id: a
    name: A
    runtime: {{type: docker, image: {docker_image}, privileged: true}}
    steps: [{{name: s, run: echo inside}}]
""")
    refused = ferry("run", "-w", wf)
    assert refused.returncode == 1
    assert "privileged containers are refused by the runner config" in refused.stdout
    config = _write(tmp_path, "runner.yaml", "runner:\n  containers: {allow_privileged: true}\n")
    allowed = ferry("run", "-w", wf, "-c", config)
    # a sandbox may forbid privileged containers; the policy no longer does
    assert "refused by the runner config" not in allowed.stdout, allowed.stdout
    bogus = _write(tmp_path, "bogus.yaml", "runner:\n  containerz: {}\n")
    bad = ferry("run", "-w", wf, "-c", bogus)
    assert bad.returncode == 2 and "runner.containerz: unknown key" in bad.stderr


def test_the_codemod_init_scaffold_finds_its_scripts_from_any_directory(
        ferry: Ferry, tmp_path: Path) -> None:
    # `codemod init` (1.18.3) writes `run: $CODEMOD_PATH/scripts/setup.sh`: CODEMOD_PATH is the
    # workflow's directory, not the directory the steps run in (this exited 127 before)
    bundle = tmp_path / "my-codemod"
    (bundle / "scripts").mkdir(parents=True)
    script = bundle / "scripts" / "setup.sh"
    script.write_text('#!/bin/sh\necho "setup from $(basename "$CODEMOD_PATH") in $PWD"\n')
    script.chmod(0o755)
    wf = _write(bundle, "workflow.yaml", """version: "1"
nodes:
  - id: shell-setup
    name: Setup (shell)
    type: automatic
    steps:
      - name: "Setup"
        run: $CODEMOD_PATH/scripts/setup.sh
""")
    target = tmp_path / "target"
    target.mkdir()
    proc = ferry("run", "-w", wf, "--workdir", str(target))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"  [shell-setup] setup from my-codemod in {target}" in proc.stdout
