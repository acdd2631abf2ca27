"""The leak suite: a workflow tries every way out for its secrets and the runner's tokens, on the
host, Docker and Podman, through `ferry run` and a real root `ferry daemon` (host steps as the
step user) against the stub server. No byte of a secret may reach a log, the run document, the
state database, the journal or the daemon's log; no token may reach anything a step can read.

Rows of the printed matrix marked "same uid" are what the README says plainly: host steps of a
`ferry run` share its uid (here root) and can read its files; that cell is not a promise.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.conftest import REPO_ROOT, need_engine
from tests.helpers import wait_until
from tests.helpers.stub import StubHandle
from tests.security import leakflow
from tests.security.leakflow import Values

RUNTIMES = ["direct", "docker", "podman"]


@dataclass
class Outcome:
    """What one run left behind, for the checks."""

    doc: dict[str, Any]
    attack_log: str
    places: dict[str, bytes]          # logs, db, journal, server data, process output...
    loot: dict[str, bytes]            # what the steps could read, as they saved it
    inspected: list[bytes] = field(default_factory=list)
    same_uid: bool = False            # host steps of `ferry run`: the runner's own uid
    step_user: str | None = None      # host steps of the root daemon run as this user


def _engine_client(runtime: str, xdg: str | None) -> Any:
    if runtime == "podman":
        return docker.DockerClient(base_url=f"unix://{xdg}/podman/podman.sock").api
    return docker.from_env().api


def _hold_then_release(workspace: Callable[[], Path | None], runtime: str, xdg: str | None,
                       run_id: Callable[[], str], snapshot: Callable[[], dict[str, bytes]],
                       proc: subprocess.Popen[bytes]) -> tuple[dict[str, bytes], list[bytes]]:
    """Wait for the `hold` step, snapshot the runner's files (the journal is still there) and
    inspect the task container while it lives, then let the step finish."""
    def held() -> Path | None:
        if proc.poll() is not None:
            raise AssertionError(f"the runner exited early ({proc.returncode})")
        ws = workspace()
        return ws if ws is not None and (ws / "holding").exists() else None

    ws = wait_until(held, timeout=180, message="the hold step")
    taken = snapshot()
    inspected = []
    if runtime != "direct":
        inspected = leakflow.inspect_env(_engine_client(runtime, xdg), run_id())
        assert inspected, "the task container was not found while its step ran"
    (ws / "go").touch()
    return taken, inspected


def _ferry_run(runtime: str, values: Values, base: Path, xdg: str | None) -> Outcome:
    home, ws, loot = base / "home", base / "ws", base / "loot"
    for d in (home / "config", ws, loot):
        d.mkdir(parents=True)
    os.chmod(loot, 0o777)
    runner_yaml = home / "config" / "runner.yaml"
    runner_yaml.write_text(f"runner: {{token: {values.runner_token}}}\n")
    os.chmod(runner_yaml, 0o600)
    wf = base / "wf.yaml"
    wf.write_text(leakflow.workflow(runtime, loot=str(loot), runner_yaml=runner_yaml,
                                    data_dir=home / "data"))
    secrets_file = base / "secrets.env"
    secrets_file.write_text('MULTI="' + values.multi.replace("\n", "\\n") + '"\n')
    env = {**os.environ, "FERRY_HOME": str(home), "FERRY_TOKEN": values.admin_token,
           "FERRY_LIVE": "0"}
    if xdg:
        env["XDG_RUNTIME_DIR"] = xdg
    out, err = base / "stdout", base / "stderr"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "run", "-w", str(wf), "--workdir", str(ws),
             "--secret", f"TOKEN={values.token}", "--secrets-file", str(secrets_file),
             "--param", f"api_key={values.param}", "--json"],
            cwd=REPO_ROOT, env=env, stdout=o, stderr=e)
        try:
            taken, inspected = _hold_then_release(
                lambda: ws, runtime, xdg, lambda: _local_run_id(home), lambda: leakflow.files_under(
                    home / "data"), proc)
            assert proc.wait(120) == 0, err.read_text()[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    import json

    doc = json.loads(out.read_text().splitlines()[-1])["run"]
    attack = next(t for t in doc["tasks"].values() if t["node_id"] == "attack")
    log = (home / "data" / "logs" / doc["id"] / f"{attack['id']}.log").read_text()
    places = {**leakflow.files_under(home / "data"), **{f"snapshot:{k}": v
                                                        for k, v in taken.items()},
              "ferry stdout": out.read_bytes(), "ferry stderr": err.read_bytes()}
    return Outcome(doc, log, places, leakflow.files_under(loot), inspected,
                   same_uid=runtime == "direct")


def _local_run_id(home: Path) -> str:
    return next((home / "data" / "logs").iterdir()).name


class _Server(StubHandle):
    def __init__(self, root: Path, values: Values) -> None:
        super().__init__(root, admin_token=values.admin_token,
                         registration_token="fr_leak_" + values.token[4:])


def _cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "runner", *args], cwd=REPO_ROOT,
                            input=stdin, capture_output=True, text=True, timeout=120,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def _daemon(runtime: str, values: Values, base: Path, xdg: str | None, step_user: str,
            open_root: Path) -> Outcome:
    from tests.helpers.gitrepo import commit, init_bare

    home, loot = open_root / "home", open_root / "loot"
    loot.mkdir()
    os.chmod(loot, 0o777)
    server = _Server(base / "server", values)
    server.start()
    try:
        runner_yaml = home / "config" / "runner.yaml"
        wf = leakflow.workflow(runtime, loot=str(loot), runner_yaml=runner_yaml,
                               data_dir=home / "data")
        commit(init_bare(server.repos, "app"), {"wf.yaml": wf})
        commit(init_bare(server.repos, "other"), {"wf.yaml": wf})
        admin = ["--server", server.url, "--token", values.admin_token]
        _cli("secret", "set", "TOKEN", "--repo", "app", *admin, stdin=values.token + "\n")
        multi = base / "multi.txt"
        multi.write_text(values.multi)
        _cli("secret", "set", "MULTI", "--repo", "app", "--from-file", str(multi), *admin)
        _cli("secret", "set", "TOKEN", "--repo", "other", *admin, stdin=values.other_repo)
        listed = _cli("secret", "list", "--repo", "app", *admin)
        assert "TOKEN" in listed and "MULTI" in listed and values.token not in listed
        env = {"FERRY_HOME": str(home)}
        _cli("register", "--server", server.url, "--token", server.process.registration_token,
             "--name", "leaky", "--step-user", step_user, env=env)
        import yaml

        cfg = yaml.safe_load(runner_yaml.read_text())
        values.runner_token = cfg["runner"]["token"]
        log_path = base / "daemon.log"
        denv = {**os.environ, **env, "FERRY_SERVER_ADMIN_TOKEN": values.admin_token,
                "FERRY_TOKEN": values.runner_token, "PYTHONUNBUFFERED": "1"}
        denv.pop("NOTIFY_SOCKET", None)
        if xdg:
            denv["XDG_RUNTIME_DIR"] = xdg
        run_id = server.admin_call("POST", "/runs", json={
            "repo": "app", "ref": "main", "workflow_path": "wf.yaml",
            "params": {"api_key": values.param}}).json()["id"]
        with log_path.open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "runner", "daemon", "--once",
                                     "--log-format", "json"], cwd=REPO_ROOT, env=denv,
                                    stdout=log, stderr=log)
            try:
                work = home / "data" / "work" / run_id / "workspace"
                taken, inspected = _hold_then_release(
                    lambda: work if work.exists() else None, runtime, xdg, lambda: run_id,
                    lambda: leakflow.files_under(home / "data"), proc)
                assert proc.wait(180) == 0, log_path.read_text()[-3000:]
            finally:
                if proc.poll() is None:
                    proc.kill()
        doc = server.admin_call("GET", f"/runs/{run_id}").json()
        logs = {t: server.admin_call("GET", f"/runs/{run_id}/logs/{t}").content
                for t in doc["tasks"]}
        attack = next(t for t in doc["tasks"].values() if t["node_id"] == "attack")
        places = {**leakflow.files_under(home / "data"),
                  **leakflow.files_under(base / "server", skip=(base / "server" / "repos",)),
                  **{f"snapshot:{k}": v for k, v in taken.items()},
                  **{f"server log {t}": v for t, v in logs.items()},
                  "server document": repr(doc).encode(), "daemon log": log_path.read_bytes()}
        return Outcome(doc, logs[attack["id"]].decode(), places, leakflow.files_under(loot),
                       inspected, step_user=step_user if runtime == "direct" else None)
    finally:
        server.kill()


def _checks(o: Outcome, values: Values) -> list[tuple[str, bool | None, str]]:
    """(way out, held, detail); None: not a promise in this cell (same uid)."""
    lines = o.attack_log.splitlines()
    attack = next(t for t in o.doc["tasks"].values() if t["node_id"] == "attack")
    loot_leaks = leakflow.leaks_in(o.loot, values.tokens)

    def loot_clean(name: str) -> bool | None:
        clean = name not in {Path(p).name for p in loot_leaks}
        return None if (o.same_uid and not clean) else clean

    env = o.loot.get(next((k for k in o.loot if k.endswith("/env")), ""), b"")
    rows: list[tuple[str, bool | None, str]] = [
        ("print the secret", {"P1:***", "P2:***", "P3:***"} <= set(lines), ""),
        ("echo it base64'd (3 alignments) and hex",
         not leakflow.found([values.token], o.attack_log.encode()), ""),
        ("split across writes", "SPLIT:***" in lines, ""),
        ("multi-line secret", all(ln not in o.attack_log for ln in values.multi.split("\n")
                                  if len(ln) >= 4), ""),
        ("write it to state and outputs", o.doc["state"].get("stolen") == "***"
         and attack.get("outputs", {}).get("out") == "***", ""),
        ("secret params in the document", o.doc["params"].get("api_key") == "***", ""),
        ("logs, document, db, journal, server, output",
         not leakflow.leaks_in(o.places, values.run_secrets + values.tokens),
         ", ".join(leakflow.leaks_in(o.places, values.run_secrets + values.tokens))[:300]),
        ("step env: no FERRY_*, no token", b"FERRY_HOME" not in env and b"FERRY_TOKEN" not in env
         and not leakflow.found(values.tokens, env), ""),
        ("read runner.yaml", loot_clean("runner-yaml"), ""),
        ("read /proc/<runner pid>/environ", loot_clean("ppid-environ"), ""),
        ("read the journal, db and logs", all(loot_clean(n) is not False
                                              for n in ("journal", "db", "logs")), ""),
        ("host steps run as the step user", o.step_user is None
         or f"USER={o.step_user}".encode() in env, ""),
        ("docker inspect the task container",
         not any(leakflow.found(values.run_secrets, blob) for blob in o.inspected), ""),
    ]
    return rows


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("driver", ["ferry run", "daemon"])
def test_no_secret_or_token_gets_out(driver: str, runtime: str, tmp_path: Path,
                                     request: pytest.FixtureRequest) -> None:
    xdg = None
    if runtime == "docker":
        need_engine("docker")
        request.getfixturevalue("docker_image")
    elif runtime == "podman":
        xdg = request.getfixturevalue("podman_runtime_dir")
    values = Values()
    if driver == "ferry run":
        outcome = _ferry_run(runtime, values, tmp_path, xdg)
    else:
        outcome = _daemon(runtime, values, tmp_path, xdg, request.getfixturevalue("step_user"),
                          request.getfixturevalue("open_root"))
    rows = _checks(outcome, values)
    print(f"\n{driver} / {runtime}")
    for way, held, detail in rows:
        mark = "held" if held else ("same uid (README)" if held is None else "LEAKED")
        print(f"  {way:45} {mark} {detail}")
    assert all(held is not False for _, held, _ in rows), rows
    assert base64.b64encode(values.token.encode()) not in outcome.attack_log.encode()
