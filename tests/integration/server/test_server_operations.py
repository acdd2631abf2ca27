"""What an operator does with `ferry-server` over a year, on a real server process: log retention
(`prune`, `--log-retention`), online backups and a restore, `--config FILE`, proxy headers
(`--forwarded-allow-ips`), `--version`, and the required options."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from server_stub.testing import StubProcess
from tests.helpers import wait_until
from tests.helpers.gitrepo import commit, init_bare
from tests.protocol.api import WORKFLOW_MANUAL, WORKFLOW_OK, Server

ROOT = Path(__file__).resolve().parents[3]
DAY = 86400.0


def ferry_server(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m server_stub ARGS` to completion."""
    return subprocess.run([sys.executable, "-m", "server_stub", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[StubProcess]:
    with StubProcess.start(tmp_path / "data", tmp_path / "repos", "--log-level", "info",
                           "--log-retention", "30d") as stub:
        init_bare(stub.repos_dir, "demo")
        commit(stub.repos_dir / "demo.git", {"ok.yaml": WORKFLOW_OK,
                                              "manual.yaml": WORKFLOW_MANUAL})
        yield stub


def _server(stub: StubProcess) -> Server:
    return Server(stub.url, stub.admin_token, stub.registration_token, stub.repos_dir)


def _old(days: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - days * DAY))


def _run_with_log(server: Server, *, finish: str | None, ended_days: float | None = None,
                  workflow: str = "ok.yaml") -> str:
    """A claimed run with a log chunk; finished with `finish` (its `ended_at` that many days
    ago when given, as the runner reports it) or left running."""
    run = server.leased_run("demo", workflow)
    lease = run.lease
    server_api = run.runner.api
    server_api.ok("POST", f"/runs/{run.id}/start", json={"lease": lease})
    assert run.runner.log(run.id, lease, "t1", 0, b"output\n").status_code == 200
    if ended_days is not None:
        ops = [{"op": "add", "path": "/ended_at", "value": _old(ended_days)}]
        resp = run.runner.diffs(run.id, lease, [{"writer": run.writer, "seq": 1, "ops": ops}])
        assert resp.status_code == 200, resp.text
    if finish is not None:
        server_api.ok("POST", f"/runs/{run.id}/finish", json={"lease": lease, "status": finish})
    return run.id


def _logs(stub: StubProcess) -> set[str]:
    root = stub.data_dir / "logs"
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def test_prune_and_log_retention_remove_only_long_finished_runs(stub: StubProcess) -> None:
    server = _server(stub)
    runs = {
        "completed-40d": _run_with_log(server, finish="Completed", ended_days=40),
        "failed-45d": _run_with_log(server, finish="Failed", ended_days=45),
        "completed-2d": _run_with_log(server, finish="Completed", ended_days=2),
        "canceled-now": _run_with_log(server, finish="Canceled"),
        "running": _run_with_log(server, finish=None),
        "paused-old": _run_with_log(server, finish="AwaitingTrigger", ended_days=90,
                                    workflow="manual.yaml"),
    }
    expired = {runs["completed-40d"], runs["failed-45d"]}
    assert set(runs.values()) <= _logs(stub)
    dry = ferry_server("prune", "--data-dir", str(stub.data_dir), "--older-than", "30d",
                       "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("Would remove the logs of 2 finished run(s)")
    assert {line.split()[1] for line in dry.stdout.splitlines()[1:]} == expired
    assert set(runs.values()) <= _logs(stub), "--dry-run removed logs"

    # --log-retention 30d: the pass at start removes the same two, nothing else
    stub.restart()
    wait_until(lambda: not expired & _logs(stub), timeout=30, message="the retention pass")
    assert _logs(stub) == set(runs.values()) - expired
    for run_id in expired:
        assert f"log retention: removed the logs of run {run_id}" in stub.log()
        doc = server.admin.ok("GET", f"/runs/{run_id}")  # the record stays
        assert doc["id"] == run_id
        assert server.admin.call("GET", f"/runs/{run_id}/logs/t1").content == b""

    # the offline command, with 0: every finished run's logs, never a running or paused one
    done = ferry_server("prune", "--data-dir", str(stub.data_dir), "--older-than", "0")
    assert done.returncode == 0, done.stderr
    assert _logs(stub) == {runs["running"], runs["paused-old"]}
    again = ferry_server("prune", "--data-dir", str(stub.data_dir))
    assert again.stdout.strip() == "No finished run's logs to remove."


def test_prune_and_backup_usage_errors(tmp_path: Path) -> None:
    for args, words in [
        (("prune", "--data-dir", str(tmp_path)), ["no server database at", str(tmp_path)]),
        (("backup", "--data-dir", str(tmp_path), "--output", str(tmp_path / "b.db")),
         ["no server database at"]),
        (("prune", "--data-dir", str(tmp_path), "--older-than", "soon"), ["'soon'"]),
        (("backup", "--data-dir", str(tmp_path)), ["--output"]),
    ]:
        proc = ferry_server(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        for word in words:
            assert word in proc.stderr, (args, proc.stderr)


def test_online_backup_while_runs_are_written_restores_on_a_new_server(
        stub: StubProcess, tmp_path: Path) -> None:
    server = _server(stub)
    created: list[str] = []
    stop = threading.Event()

    def writer() -> None:  # keeps writing while the backup runs (bounded)
        for _ in range(300):
            if stop.is_set():
                return
            body = {"repo": "demo", "ref": "main", "workflow_path": "ok.yaml"}
            created.append(server.admin.ok("POST", "/runs", 201, json=body)["id"])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_until(lambda: len(created) >= 20, timeout=60, message="some runs written")
        before = len(created)
        backup = tmp_path / "backup" / "server-copy.db"
        backup.parent.mkdir()
        proc = ferry_server("backup", "--data-dir", str(stub.data_dir), "--output", str(backup))
    finally:
        stop.set()
        thread.join(60)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    with sqlite3.connect(backup) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        copied = {r[0] for r in conn.execute("SELECT id FROM runs")}
    assert set(created[:before]) <= copied <= set(created)
    assert f"({len(copied)} runs) to {backup}" in proc.stdout

    # restore: a fresh data dir holding the copy as server.db serves the same runs
    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    os.replace(backup, restored / "server.db")
    with StubProcess.start(restored, stub.repos_dir, admin_token=stub.admin_token) as again:
        listed = requests.get(again.url + "/api/v1/runs", params={"limit": 1000},
                              headers=again.admin_headers, timeout=30).json()["runs"]
        assert {r["id"] for r in listed} == copied


def _launch(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    port_file = tmp_path / f"port-{time.monotonic_ns()}"
    log = (tmp_path / "server-out.log").open("a")
    proc = subprocess.Popen([sys.executable, "-m", "server_stub", *args, "--port", "0",
                             "--port-file", str(port_file)], stdout=log, stderr=log, text=True,
                            cwd=ROOT, env={**os.environ, "FERRY_SERVER_ADMIN_TOKEN": "adm" * 8})
    wait_until(lambda: port_file.exists() or proc.poll() is not None, timeout=30,
               message="the server's port")
    assert proc.poll() is None, (tmp_path / "server-out.log").read_text()
    url = f"http://127.0.0.1:{port_file.read_text().strip()}"
    wait_until(lambda: _answers(url), timeout=30, message="the server answering")
    return proc, url


def _answers(url: str) -> bool:
    try:
        requests.get(url + "/api/v1/runs", timeout=2)
    except requests.RequestException:
        return False
    return True


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(30)


def test_config_file_supplies_the_options_and_flags_win(tmp_path: Path) -> None:
    (tmp_path / "repos").mkdir()
    config = tmp_path / "server.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nrepos: {tmp_path / 'repos'}\n"
                      "host: 127.0.0.1\nport: 1\nlease-ttl: 7\nno_access_log: true\n")
    proc, url = _launch(tmp_path, "--config", str(config))  # --port 0 wins over the file's 1
    try:
        assert (tmp_path / "data" / "server.db").exists()
        assert not url.endswith(":1")
    finally:
        _stop(proc)
    for text, words in [("data_dir: /x\nbogus: 1\n", [":2:", "unknown key 'bogus'"]),
                        ("lease_ttl: never\n", [":1:", "lease_ttl", "'never'"]),
                        ("log_level: loud\n", ["'loud' is not one of"]),
                        ("- a list\n", ["must be a mapping"])]:
        config.write_text(text)
        bad = ferry_server("--config", str(config))
        assert bad.returncode == 2, bad.stderr
        assert "Traceback" not in bad.stderr
        for word in words:
            assert word in bad.stderr, (text, bad.stderr)


def test_forwarded_allow_ips_decides_whose_client_address_is_logged(tmp_path: Path) -> None:
    (tmp_path / "repos").mkdir()
    rows = []
    out = tmp_path / "server-out.log"

    def logged() -> str | None:
        return next((ln for ln in out.read_text().splitlines() if "claimless" in ln), None)

    for trusted, expect in (("127.0.0.1", "203.0.113.9"), ("192.0.2.1", "127.0.0.1")):
        out.unlink(missing_ok=True)
        proc, url = _launch(tmp_path, "--data-dir", str(tmp_path / "data"), "--repos",
                            str(tmp_path / "repos"), "--forwarded-allow-ips", trusted)
        try:
            requests.get(url + "/api/v1/runs/claimless", timeout=10,
                         headers={"X-Forwarded-For": "203.0.113.9",
                                  "X-Forwarded-Proto": "https"})
            line = wait_until(logged, timeout=10, message="the access log line")
        finally:
            _stop(proc)
        rows.append((trusted, expect, line))
        assert expect + ":" in line, line
    print("\n".join(f"trusted={t:12} logged client={e:12} | {ln}" for t, e, ln in rows))


def test_version_and_required_options() -> None:
    from runner import __version__

    proc = ferry_server("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"ferry-server {__version__}"
    missing = ferry_server()
    assert missing.returncode == 2
    assert "the following arguments are required: --data-dir, --repos" in missing.stderr
    helped = ferry_server("--help").stdout
    for option in ("--data-dir DIR", "--repos DIR"):
        line = next(ln for ln in helped.splitlines() if ln.strip().startswith(option))
        assert "(required)" in line, line
    assert "usage: ferry-server [serve] --data-dir DIR --repos DIR" in helped


@pytest.mark.parametrize("command", ["serve", "prune", "backup", "openapi"])
def test_each_command_help_names_it_and_explains_every_option(command: str) -> None:
    """`ferry-server prune --help` once printed the whole top-level usage as its program name
    ("ferry-server --version prune"), and `--host`, `openapi --output` said nothing."""
    import argparse

    from server_stub.cli import build_parser

    helped = ferry_server(command, "--help")
    assert helped.returncode == 0
    usage = helped.stdout.split("\n\n")[0]
    assert usage.startswith(f"usage: ferry-server {command}" if command != "serve"
                            else "usage: ferry-server [serve] "), usage
    assert "--version" not in usage, usage
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    silent = [a.option_strings[0] for a in sub.choices[command]._actions
              if a.option_strings and not a.help and a.dest != "help"]
    assert silent == [], f"ferry-server {command}: options without help: {silent}"


def _examples() -> Any:
    return ROOT / "examples" / "config"


def test_example_server_config_is_valid() -> None:
    from server_stub.cli import build_parser
    from server_stub.config_file import read_config_file

    settings = read_config_file(_examples() / "server.yaml", build_parser())
    assert settings["data_dir"] == Path("/var/lib/ferry-server")
    assert settings["repos"].is_absolute()
    assert settings["log_retention"] == 90 * DAY
