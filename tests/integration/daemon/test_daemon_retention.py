"""The daemon's `runner.retention`: passes on their own thread remove finished runs' files, never
those of the run it is executing, and log what they removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.helpers import wait_until
from tests.helpers.runfiles import daemon_run_files
from tests.integration.daemon.conftest import Server

WAIT = """\
version: "1"
nodes:
  - id: wait
    steps:
      - run: |
          echo started
          while [ ! -e {gate} ]; do sleep 0.05; done
"""


def _files(home: Path, run_id: str) -> list[str]:
    data = home / "data"
    return [str(p.relative_to(data)) for p in (data / "work" / run_id, data / "logs" / run_id,
                                                data / "locks" / f"{run_id}.lock")
            if p.exists()]


def test_retention_prunes_finished_runs_and_never_the_executing_one(
        server: Server, make_daemon: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    server.repo("demo", {"wait.yaml": WAIT.format(gate=gate)})
    daemon = make_daemon(server)
    daemon.register()
    config = daemon.home / "config" / "runner.yaml"
    data = yaml.safe_load(config.read_text())
    data["runner"]["retention"] = {"older_than": "0s", "interval": "0.2s"}
    config.write_text(yaml.safe_dump(data))
    old = daemon_run_files(daemon.home, "acked", 40)
    stranded = daemon_run_files(daemon.home, "lost", 40)
    daemon.start("--log-level", "debug")

    def pruned(run_id: str) -> bool:
        return any(e.get("run") == run_id for e in daemon.logged("pruned run files"))

    wait_until(lambda: pruned(old), timeout=30, message="the old run pruned")
    assert _files(daemon.home, old) == []
    assert not list((daemon.home / "data" / "journal").glob(f"{old}*"))

    run_id = server.submit("demo", "wait.yaml")
    wait_until(lambda: (daemon.home / "data" / "logs" / run_id).exists() and
               server.status(run_id) == "Running", timeout=60, message="the run executing")
    passes = len(daemon.logged("retention pass"))
    wait_until(lambda: len(daemon.logged("retention pass")) >= passes + 3, timeout=30,
               message="three passes while the run executes")
    assert not pruned(run_id)
    assert "work/" + run_id in _files(daemon.home, run_id)
    gate.touch()
    wait_until(lambda: server.status(run_id) == "Completed", timeout=60, message="completion")
    wait_until(lambda: pruned(run_id), timeout=30, message="the finished run pruned")
    assert _files(daemon.home, run_id) == []
    # the journal a lost lease stranded was moved aside at start (never delivered, never
    # retried) and stays there for a human: retention does not look into journal/superseded/
    aside = daemon.home / "data" / "journal" / "superseded"
    assert [p.name.split(".")[0] for p in aside.glob("*.jsonl")] == [stranded]
    assert not (daemon.home / "data" / "journal" / f"{stranded}.jsonl").exists()
    daemon.signal(15)
    assert daemon.wait(60) == 0, daemon.log()[-3000:]
