"""`ferry submit` and `--server` variants of status/list/logs/cancel/resume against the stub."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.cli import main
from tests.protocol.api import WORKFLOW_MANUAL, Server, label, op_state


def _cli(server: Server, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--server", server.url, "--token", server.admin_token])
    out, err = capsys.readouterr()
    return code, out, err


def test_submit_prints_the_run_id(server: Server, repo: dict[str, str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    lab = label()
    code, out, _ = _cli(server, capsys, "submit", "--repo", repo["name"], "--ref", "v1",
                        "-w", "ok.yaml", "--param", "a=1", "--label", lab)
    assert code == 0
    run_id = out.strip()
    doc = server.admin.ok("GET", f"/runs/{run_id}")
    assert doc["params"] == {"a": "1"}
    runs = server.admin.ok("GET", f"/runs?repo={repo['name']}&limit=1000")["runs"]
    info = next(r for r in runs if r["id"] == run_id)
    assert info["labels"] == [lab] and info["commit"] == repo["sha"]


def test_submit_invalid_workflow_exits_2_with_the_errors(
        server: Server, repo: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(server, capsys, "submit", "--repo", repo["name"], "--ref", "main",
                          "-w", "bad.yaml")
    assert code == 2 and out == ""
    assert "Error" in err and "bad.yaml" in err and "Traceback" not in err


def test_submit_usage_and_server_errors(server: Server, repo: dict[str, str],
                                        capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FERRY_SERVER", raising=False)
    monkeypatch.delenv("FERRY_TOKEN", raising=False)
    assert main(["submit", "--repo", "r", "-w", "x.yaml"]) == 2
    code = main(["submit", "--repo", repo["name"], "-w", "ok.yaml", "--server", server.url,
                 "--token", "wrong"])
    assert code == 6
    assert "wrong" not in capsys.readouterr().err  # tokens never echoed
    code = main(["submit", "--repo", repo["name"], "-w", "ok.yaml", "--param", "novalue",
                 "--server", server.url, "--token", server.admin_token])
    assert code == 2


@pytest.mark.parametrize("repo_name, ref, path, words", [
    ("nope", "main", "ok.yaml", ["unknown repository 'nope'"]),
    (None, "no-such-branch", "ok.yaml", ["no-such-branch"]),
    (None, "main", "missing/wf.yaml", ["missing/wf.yaml"]),
])
def test_submit_of_an_unknown_repo_ref_or_path_exits_2(
        server: Server, repo: dict[str, str], capsys: pytest.CaptureFixture[str],
        repo_name: str | None, ref: str, path: str, words: list[str]) -> None:
    """A typo (exit 2) is told apart from an unreachable control plane (exit 6)."""
    code, out, err = _cli(server, capsys, "submit", "--repo", repo_name or repo["name"],
                          "--ref", ref, "-w", path)
    assert (code, out) == (2, ""), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ferry: error: "), err
    for word in [*words, server.url]:
        assert word in lines[0], lines[0]


def _blocks(text: str) -> dict[str, list[str]]:
    """`ferry list` output: each run's lines by run id."""
    out: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("- ID: "):
            current = out.setdefault(line[6:].strip(), [])
        elif line.startswith("  "):
            current.append(line.strip())
    return out


def test_list_server_shows_times_and_names_as_the_local_list(
        server: Server, repo: dict[str, str], capsys: pytest.CaptureFixture[str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    queued = server.admin.ok("POST", "/runs", 201, json={
        "repo": repo["name"], "ref": "main", "workflow_path": "manual.yaml",
        "labels": [label()]})["id"]
    run = server.leased_run(repo["name"], "manual.yaml")
    started = "2026-01-02T03:04:05.000Z"
    ops = [{"op": "replace", "path": "/status", "value": "Running"},
           {"op": "add", "path": "/started_at", "value": started}]
    assert run.runner.diffs(run.id, run.lease, [{"writer": run.writer, "seq": 1, "ops": ops}]
                            ).status_code == 200
    run.runner.api.ok("POST", f"/runs/{run.id}/finish",
                      json={"lease": run.lease, "status": "Completed"})
    code, out, _ = _cli(server, capsys, "list", "--limit", "1000")
    assert code == 0
    blocks = _blocks(out)
    pending, done = blocks[queued], blocks[run.id]
    assert pending[:2] == ["Name: manual", "Status: Pending"]
    assert pending[2].startswith("Created: ") and len(pending) == 3  # never "Started"
    assert done[:3] == ["Name: manual", "Status: Completed", "Started: 2026-01-02T03:04:05Z"]
    assert done[3].startswith("Completed: ") and done[4].startswith("Duration: ")
    # the local list names the same file the same way, with the same lines
    monkeypatch.setenv("FERRY_HOME", str(tmp_path / "home"))
    automatic = WORKFLOW_MANUAL.replace("type: manual", "type: automatic")
    (tmp_path / "manual.yaml").write_text(automatic)
    assert main(["run", "-w", str(tmp_path / "manual.yaml")]) == 0
    capsys.readouterr()
    assert main(["list"]) == 0
    local = next(iter(_blocks(capsys.readouterr().out).values()))
    assert [line.split(":")[0] for line in local] == ["Name", "Status", "Started", "Completed",
                                                      "Duration"]
    assert local[0] == "Name: manual"


def test_status_list_logs_cancel_resume(server: Server, repo: dict[str, str],
                                        capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    run = server.leased_run(repo["name"], "manual.yaml")
    run_id, runner, lease = run.id, run.runner, run.lease
    task = "11111111-1111-4111-8111-111111111111"
    ops = [{"op": "add", "path": f"/tasks/{task}", "value": {
        "id": task, "node_id": "approve", "status": "AwaitingTrigger", "master": False,
        "parent": None, "matrix": None, "triggered": False}},
        {"op": "replace", "path": "/status", "value": "AwaitingTrigger"}, op_state("k", 1)]
    assert runner.diffs(run_id, lease, [{"writer": "w", "seq": 1, "ops": ops}]).ok
    assert runner.log(run_id, lease, task, 0, b"line one\nline two\n").ok
    runner.api.ok("POST", f"/runs/{run_id}/finish",
                  json={"lease": lease, "status": "AwaitingTrigger"})
    # Through the environment this time.
    monkeypatch.setenv("FERRY_SERVER", server.url)
    monkeypatch.setenv("FERRY_TOKEN", server.admin_token)
    assert main(["status", "-i", run_id[:8]]) == 0
    out = capsys.readouterr().out
    assert f"(ID: {run_id})" in out and "Status: AwaitingTrigger" in out and "approve" in out
    assert main(["status", "-i", run_id, "--history"]) == 0
    assert "History:" in capsys.readouterr().out
    assert main(["list", "--limit", "1000"]) == 0
    assert f"- ID: {run_id}" in capsys.readouterr().out
    assert main(["logs", "-i", run_id]) == 0
    assert capsys.readouterr().out == "[approve] line one\n[approve] line two\n"
    assert main(["logs", "-i", run_id, "-t", task]) == 0
    assert capsys.readouterr().out == "line one\nline two\n"
    assert main(["resume", "-i", run_id, "-t", "approve"]) == 0
    assert "queued" in capsys.readouterr().out
    assert server.admin.ok("GET", f"/runs/{run_id}")["tasks"][task]["triggered"] is True
    assert main(["cancel", "-i", run_id]) == 0
    assert "canceled" in capsys.readouterr().out
    assert server.admin.ok("GET", f"/runs/{run_id}")["status"] == "Canceled"
    assert main(["cancel", "-i", run_id]) == 2


def test_status_history_marks_late_diffs_kept_but_not_applied(
        server: Server, repo: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    run = server.leased_run(repo["name"], "manual.yaml")
    ok = run.runner.diffs(run.id, run.lease, [{"writer": run.writer, "seq": 1,
                                               "ops": [op_state("early", 1)]}])
    assert ok.status_code == 200, ok.text
    run.runner.api.ok("POST", f"/runs/{run.id}/finish", json={"lease": run.lease,
                                                               "status": "Failed"})
    late = run.runner.diffs(run.id, run.lease, [{"writer": run.writer, "seq": 2, "ops": [
        {"op": "replace", "path": "/status", "value": "Completed"}]}])
    assert late.status_code == 200, late.text
    code, out, _ = _cli(server, capsys, "status", "-i", run.id, "--history")
    assert code == 0
    lines = [ln for ln in out.splitlines() if f"{run.writer} #" in ln]
    assert len(lines) == 2, out
    assert "late: kept, not applied" not in lines[0]  # an ordinary diff reads as before
    assert "late: kept, not applied" in lines[1], lines[1]
