"""Which token `ferry sync` uses: --token, FERRY_RUNNER_TOKEN, the config's, and only then the
deprecated FERRY_TOKEN (the admin token of every other command), saying so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.api.client import ControlClient
from runner.api.retry import RetryPolicy
from runner.diff import Diff
from runner.document import new_run, run_field_op
from runner.state.api import ApiBackend
from tests.integration.sync.conftest import ADMIN, StubServer

ROOT = Path(__file__).resolve().parents[3]
FAST = RetryPolicy(max_attempts=2, initial=0.01, max_wait=0.02)


def _offline_journal(stub: StubServer, home: Path, token: str) -> str:
    """A run reported while the server was down: its journal waits under `home`."""
    client = ControlClient(stub.url, token, timeout=2)
    backend = ApiBackend(client, home / "data" / "journal", home / "data" / "logs",
                         policy=FAST)
    try:
        doc = new_run({"version": "1", "nodes": []}, name="offline", params={},
                      created_at="2026-01-01T00:00:00Z")
        backend.create_run(doc)
        backend.apply(Diff(run_id=doc["id"], writer="local", seq=1,
                           ops=[run_field_op("status", "Completed")]))
        backend.finish(doc["id"], "Completed")
    finally:
        backend.close()
    return str(doc["id"])


@pytest.mark.parametrize("case", ["FERRY_RUNNER_TOKEN", "--token", "config despite admin "
                                  "FERRY_TOKEN", "deprecated FERRY_TOKEN"])
def test_sync_token_sources(stub: StubServer, tmp_path: Path, case: str) -> None:
    stub.start()
    runner_id, token = stub.register()
    stub.kill()
    home = tmp_path / "home"
    run_id = _offline_journal(stub, home, token)
    stub.start()
    env = {k: v for k, v in os.environ.items()
           if k not in ("FERRY_TOKEN", "FERRY_RUNNER_TOKEN", "FERRY_SERVER")}
    env["FERRY_HOME"] = str(home)
    args = ["--server", stub.url]
    if case == "FERRY_RUNNER_TOKEN":
        env["FERRY_RUNNER_TOKEN"] = token
    elif case == "--token":
        args += ["--token", token]
    elif case.startswith("config"):
        env["FERRY_TOKEN"] = ADMIN  # set for the users' commands: must not be taken here
        config = home / "config" / "runner.yaml"
        config.parent.mkdir(parents=True)
        config.write_text(yaml.safe_dump({"runner": {"server": stub.url, "token": token,
                                                     "runner_id": runner_id}}))
        config.chmod(0o600)
    else:
        env["FERRY_TOKEN"] = token
    done = subprocess.run([sys.executable, "-m", "runner", "sync", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Synced 1 journal(s)" in done.stdout and ", 0 left" in done.stdout
    warned = "FERRY_TOKEN as the runner token of `ferry sync` is deprecated" in done.stderr
    assert warned == (case == "deprecated FERRY_TOKEN"), done.stderr
    assert token not in done.stdout + done.stderr
    assert stub.admin_get(f"/runs/{run_id}").json()["status"] == "Completed"
