"""`ferry run -c` with `backend: api` against the real stub: an unreachable server, a refused
token and an endpoint where no Ferry API answers are one line and exit 6; the journal of a run
that went on offline is kept and `ferry sync` delivers it; an endpoint with a path works when a
proxy serves the API under it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.faultproxy import FaultProxy
from tests.helpers.tmpfs import fill, free, small_disk
from tests.integration.local.conftest import Ferry
from tests.integration.sync.conftest import StubServer

WORKFLOW = """\
version: "1"
nodes:
  - id: build
    steps:
      - run: |
          echo "built" >> "${{params.dir}}/marks"
          echo "line one"; echo "line two"
          echo "artifact=ok" >> "$STATE_OUTPUTS"
  - id: test
    depends_on: [build]
    steps:
      - run: echo "tested" >> "${{params.dir}}/marks"
"""


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[StubServer]:
    server = StubServer(tmp_path / "stub")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _config(ferry: Ferry, endpoint: str, token: str) -> Path:
    path = ferry.workdir / "ferry.yaml"
    path.write_text("stateManagement:\n  backend: api\n  apiConfig:\n"
                    f"    endpoint: \"{endpoint}\"\n    authToken: \"{token}\"\n"
                    "  retryConfig:\n    maxRetries: 1\n    backoffFactor: 1.0\n")
    (ferry.workdir / "wf.yaml").write_text(WORKFLOW)
    return path


def _run(ferry: Ferry, config: Path) -> tuple[int, str, str]:
    proc = subprocess.run(ferry.argv("run", "-w", "wf.yaml", "-c", str(config), "--param",
                                     f"dir={ferry.workdir}"), env=ferry.env,
                          cwd=ferry.workdir, text=True, capture_output=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def _journals(ferry: Ferry) -> list[Path]:
    return sorted((ferry.home / "data" / "journal").glob("*.jsonl"))


def _marks(ferry: Ferry) -> list[str]:
    path = ferry.workdir / "marks"
    return path.read_text().splitlines() if path.exists() else []


def test_an_unreachable_server_is_exit_6_one_line_and_ferry_sync_delivers_later(
        ferry: Ferry, stub: StubServer) -> None:
    _, token = stub.register()
    stub.kill()
    config = _config(ferry, stub.url, token)
    code, out, err = _run(ferry, config)
    assert code == 6, (out, err)
    assert _marks(ferry) == ["built", "tested"], "the run went on offline"
    assert "Workflow completed successfully" in out or "Completed" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    run_id = ferry.run_id(out)
    assert lines[0].startswith("ferry: error: ") and f"run {run_id}" in lines[0]
    assert f"cannot connect to the control plane at {stub.url}" in lines[0]
    assert "`ferry sync` delivers them" in lines[0]
    assert [p.name for p in _journals(ferry)] == [f"{run_id}.jsonl"], "the journal is kept"
    stub.start()
    synced = ferry("sync", "-c", str(config))
    assert synced.returncode == 0, synced.stdout + synced.stderr
    doc = stub.admin_get(f"/runs/{run_id}").json()
    assert doc["status"] == "Completed" and doc["state"] == {"artifact": "ok"}
    build = next(t for t in doc["tasks"].values() if t["node_id"] == "build")
    assert stub.admin_get(f"/runs/{run_id}/logs/{build['id']}").content == \
        b"line one\nline two\n"
    assert _journals(ferry) == []


def test_a_refused_token_is_exit_6_at_start_and_nothing_runs(
        ferry: Ferry, stub: StubServer) -> None:
    config = _config(ferry, stub.url, "not-a-runner-token")
    code, out, err = _run(ferry, config)
    assert code == 6, (out, err)
    assert err.strip().splitlines() == [
        f"ferry: error: the control plane at {stub.url} refused the token: "
        "POST /runs/report: HTTP 401 unauthorized: unknown token"], err
    assert _marks(ferry) == [] and _journals(ferry) == []
    assert "not-a-runner-token" not in out + err


def test_an_endpoint_with_a_path_works_behind_a_proxy_serving_it(
        ferry: Ferry, stub: StubServer) -> None:
    _, token = stub.register()
    with FaultProxy(("127.0.0.1", stub.port), rate=0, prefix="/workflow-state") as proxy:
        config = _config(ferry, proxy.url + "/workflow-state", token)
        code, out, err = _run(ferry, config)
    assert code == 0, (out, err)
    run_id = ferry.run_id(out)
    assert stub.admin_get(f"/runs/{run_id}").json()["status"] == "Completed"
    assert _journals(ferry) == []


def test_an_endpoint_where_no_ferry_api_answers_is_refused_at_start(
        ferry: Ferry, stub: StubServer) -> None:
    _, token = stub.register()
    config = _config(ferry, stub.url + "/workflow-state", token)
    code, out, err = _run(ferry, config)
    assert code == 6, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ferry: error: the run could not be reported to "
                               f"{stub.url}/workflow-state: POST /runs/report: HTTP 404")
    assert "must be the base URL of a Ferry control plane" in lines[0]
    assert _marks(ferry) == [] and _journals(ferry) == []


def test_an_endpoint_that_is_not_a_url_is_a_config_error(ferry: Ferry) -> None:
    config = _config(ferry, "api.example.com/workflow-state", "t")
    code, _, err = _run(ferry, config)
    assert code == 2
    assert err.strip() == (f"ferry: error: {config}: stateManagement.apiConfig.endpoint "
                           "'api.example.com/workflow-state' is not an http(s) URL of a control "
                           "plane, e.g. http://ctl.example:8750")


def test_a_full_disk_is_one_clean_failure_the_server_learns_of(
        ferry: Ferry, stub: StubServer, tmp_path: Path) -> None:
    _, token = stub.register()
    config = _config(ferry, stub.url, token)
    (ferry.workdir / "wf.yaml").write_text(
        'version: "1"\nnodes:\n  - id: talk\n    steps:\n      - run: |\n'
        '          i=0; while [ $i -lt 4000 ]; do i=$((i+1)); echo "line $i '
        '................................................................"; done\n')
    with small_disk(tmp_path / "disk", "4m") as disk:
        ferry.home = disk / "home"
        assert ferry("list").returncode == 0  # the database and the directories exist
        fill(disk, leave=150_000)
        proc = subprocess.run(ferry.argv("run", "-w", "wf.yaml", "-c", str(config)),
                              env=ferry.env, cwd=ferry.workdir, text=True, capture_output=True,
                              timeout=120)
        free(disk)
    assert proc.returncode == 5, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"ferry: error: no space left on device under {disk / 'home' / 'data'}")
    run_id = ferry.run_id(proc.stdout)
    doc = stub.admin_get(f"/runs/{run_id}").json()
    assert doc["status"] == "Failed" and doc["error"].startswith("no space left on device under")
