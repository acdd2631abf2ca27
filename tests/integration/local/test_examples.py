"""Every example workflow runs through the real CLI and ends in the state it documents."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from tests.integration.local.conftest import REPO, Ferry

EXAMPLES = REPO / "examples"


def _run(ferry: Ferry, name: str, *extra: str) -> tuple[int, str, dict[str, Any]]:
    proc = ferry("run", "-w", str(EXAMPLES / name), *extra)
    run_id = ferry.run_id(proc.stdout)
    return proc.returncode, proc.stdout, ferry.doc(run_id)


def _statuses(ferry: Ferry, doc: dict[str, Any]) -> dict[str, list[str]]:
    return {node: sorted(t["status"] for t in tasks)
            for node, tasks in ferry.by_node(doc).items()}


def test_hello(ferry: Ferry) -> None:
    code, out, doc = _run(ferry, "hello.yaml")
    assert code == 0
    assert "  [hello-world] Hello, World!" in out
    assert doc["status"] == "Completed"
    assert _statuses(ferry, doc) == {"hello-world": ["Completed"]}


def test_multi_step(ferry: Ferry) -> None:
    code, out, doc = _run(ferry, "multi-step.yaml")
    assert code == 0, out
    [task] = ferry.by_node(doc)["build"]
    assert task["outputs"] == {"result": "hello from step two"}
    assert "  [build] hello from step two" in out
    assert list(ferry.workdir.iterdir()) == []  # its scratch directory is removed


def test_matrix_values(ferry: Ferry) -> None:
    code, out, doc = _run(ferry, "matrix-values.yaml")
    assert code == 0, out
    tasks = ferry.by_node(doc)["process-regions"]
    masters = [t for t in tasks if t["master"]]
    children = [t for t in tasks if not t["master"]]
    assert len(masters) == 1 and masters[0]["status"] == "Completed"
    assert sorted(t["matrix"]["region"] for t in children) == ["eu-central", "us-east", "us-west"]
    assert all(t["parent"] == masters[0]["id"] for t in children)
    assert sorted(doc["state"]["deployed"]) == ["eu-central", "us-east", "us-west"]
    assert "Created matrix tasks for process-regions:" in out
    assert f"  - Master task: {masters[0]['id']}" in out
    assert "deploying eu-central with 3 replicas" in out
    assert _statuses(ferry, doc)["summary"] == ["Completed"]


def test_matrix_from_state(ferry: Ferry) -> None:
    code, out, doc = _run(ferry, "matrix-from-state.yaml")
    assert code == 0, out
    children = [t for t in ferry.by_node(doc)["process-shard"] if not t["master"]]
    assert sorted(t["matrix"]["name"] for t in children) == ["alpha", "beta"]
    assert sorted(doc["state"]["processed"]) == ["alpha", "beta"]
    assert "processing shard beta (5 files)" in out


def test_template_inputs(ferry: Ferry) -> None:
    code, out, doc = _run(ferry, "template-inputs.yaml", "--param", "who=Ferry")
    assert code == 0, out
    assert "Hello, Ferry!" in out and "Hello, world?" in out
    assert sorted(doc["state"]["greeted"]) == ["Ferry", "world"]
    assert doc["params"] == {"who": "Ferry"}


def test_approval_gate_pauses_then_resumes(ferry: Ferry) -> None:
    code, out, doc = _run(ferry, "approval-gate.yaml")
    assert code == 3, out
    [approve] = ferry.by_node(doc)["approve"]
    assert approve["status"] == "AwaitingTrigger"
    assert _statuses(ferry, doc)["deploy"] == ["Pending"]
    assert f"ferry resume -i {doc['id']} -t {approve['id']}" in out
    assert f"ferry resume -i {doc['id']} --trigger-all" in out
    proc = ferry("resume", "-i", doc["id"], "-t", approve["id"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Task {approve['id']} (approve) triggered" in proc.stdout
    assert "deploying (approved=true)" in proc.stdout
    doc = ferry.doc(doc["id"])
    assert doc["status"] == "Completed" and doc["state"]["approved"] is True
    assert ferry.by_node(doc)["approve"][0]["triggered"] is True


def test_state_and_outputs(ferry: Ferry) -> None:
    code, out, doc = _run(ferry, "state-and-outputs.yaml")
    assert code == 0, out
    assert doc["state"]["version"] == "1.2.3"
    assert doc["state"]["config"] == {"retries": 3, "verbose": True}
    assert doc["state"]["files"] == ["a.txt", "b.txt"]
    assert doc["state"]["notes"] == "line one\nline two"
    outputs = {n: ts[0]["outputs"] for n, ts in ferry.by_node(doc).items()}
    assert outputs == {"produce": {"artifact": "build-42.tar"},
                       "consume": {"summary": "build-42.tar@1.2.3"}}
    assert "retries 3, first file a.txt" in out


def test_shebang_python(ferry: Ferry) -> None:
    code, out, doc = _run(ferry, "shebang-python.yaml")
    assert code == 0, out
    assert doc["state"]["squares"] == [0, 1, 4]
    assert "[python-script] squares: [0, 1, 4]" in out


def test_failure_blocks_dependents(ferry: Ferry) -> None:
    code, out, doc = _run(ferry, "failure-blocked.yaml")
    assert code == 1, out
    assert doc["status"] == "Failed"
    assert _statuses(ferry, doc) == {"compile": ["Failed"], "test": ["Blocked"],
                                     "package": ["Blocked"], "lint": ["Completed"]}
    [compile_] = ferry.by_node(doc)["compile"]
    assert "exit code 3" in (compile_["error"] or "")
    assert "unreachable" not in out
    assert "error: missing semicolon" in out
    status = ferry("status", "-i", doc["id"]).stdout
    assert "- test (" in status and "Blocked" in status


def test_timeout(ferry: Ferry) -> None:
    code, out, doc = _run(ferry, "timeout.yaml")
    assert code == 1, out
    nodes = ferry.by_node(doc)
    assert nodes["slow"][0]["status"] == "Failed"
    assert "timed out" in (nodes["slow"][0]["error"] or "")
    assert nodes["quick"][0]["status"] == "Completed"
    status = ferry("status", "-i", doc["id"]).stdout
    assert "timeout 1m" in status


def test_retry(ferry: Ferry) -> None:
    for _ in range(2):  # the second run behaves as the first
        code, out, doc = _run(ferry, "retry.yaml")
        assert code == 0, out
        [flaky] = ferry.by_node(doc)["flaky"]
        assert flaky["status"] == "Completed" and flaky["attempt"] == 3
        assert doc["state"]["tries"] == 3
        assert [ln for ln in out.splitlines() if "[flaky] attempt" in ln] == [
            "  [flaky] attempt 1", "  [flaky] attempt 2", "  [flaky] attempt 3"]
        status = ferry("status", "-i", doc["id"]).stdout
        assert "attempt 3/3" in status
    assert list(ferry.workdir.iterdir()) == []
    assert not list(Path(tempfile.gettempdir()).glob(f"ferry-retry-{flaky['id']}"))


def test_docker_build_in_containers(ferry: Ferry, docker_image: str) -> None:
    code, out, doc = _run(ferry, "docker/build-in-containers.yaml")
    assert code == 0, out
    assert _statuses(ferry, doc) == {"build": ["Completed"], "test": ["Completed"]}
    assert doc["state"]["artifacts"] == ["app.tar"]
    assert "  [test] app-linux-amd64" in out and "fresh container: /tmp is empty" in out
    assert list(ferry.workdir.iterdir()) == []


EXIT = {"approval-gate": 3, "manual-approval": 3, "templates": 3, "failure-blocked": 1,
        "timeout": 1}
ARGS = {"template-inputs": ["--param", "who=Ferry"]}  # as its header says


def test_no_example_leaves_files_in_the_working_directory(ferry: Ferry) -> None:
    """Running the examples from the repository root must leave the checkout as it was: each
    runs in an empty directory, which must be empty again afterwards."""
    rows = []
    for path in sorted(Path(EXAMPLES).glob("*.yaml")):
        proc = ferry("run", "-w", str(path), *ARGS.get(path.stem, []))
        left = sorted(str(p.relative_to(ferry.workdir)) for p in ferry.workdir.rglob("*"))
        rows.append((path.stem, proc.returncode, left))
        for item in ferry.workdir.iterdir():
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    print("\n".join(f"{name:20} exit {code}  left {left}" for name, code, left in rows))
    assert [(n, c) for n, c, _ in rows] == [(n, EXIT.get(n, 0)) for n, _, _ in rows]
    assert [(n, left) for n, _, left in rows if left] == []


def test_every_example_is_covered() -> None:
    tested = {"hello", "multi-step", "matrix-values", "matrix-from-state", "template-inputs",
              "approval-gate", "state-and-outputs", "shebang-python", "failure-blocked",
              "timeout", "retry"}
    mine = {p.stem for p in Path(EXAMPLES).glob("*.yaml")} - {
        "simple", "matrix", "manual-approval", "templates"}  # the language owner's examples
    assert mine <= tested, f"examples without a test: {sorted(mine - tested)}"
