"""Running the real `ferry` command (`python -m runner`) against a private FERRY_HOME."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Ferry:
    """Runs ferry subcommands with one FERRY_HOME and one working directory."""

    home: Path
    workdir: Path

    @property
    def env(self) -> dict[str, str]:
        """The child environment: private FERRY_HOME, the repo importable."""
        env = dict(os.environ)
        env["FERRY_HOME"] = str(self.home)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def argv(self, *args: str) -> list[str]:
        """The command line of `ferry ARGS`."""
        return [sys.executable, "-m", "runner", *args]

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run to completion, capturing output."""
        return subprocess.run(self.argv(*args), env=self.env, cwd=self.workdir, text=True,
                              capture_output=True, timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start in its own session (so a test can kill its whole process group)."""
        return subprocess.Popen(self.argv(*args), env=self.env, cwd=self.workdir, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)

    def run_id(self, out: str) -> str:
        """The run id announced in `ferry run` output."""
        for line in out.splitlines():
            if "Workflow started with ID: " in line:
                return line.split("Workflow started with ID: ")[1].strip()
        raise AssertionError(f"no run id in output:\n{out}")

    def doc(self, run_id: str) -> dict[str, Any]:
        """The run document through `ferry status --json`."""
        proc = self("status", "-i", run_id, "--json")
        assert proc.returncode == 0, proc.stderr
        doc: dict[str, Any] = json.loads(proc.stdout)
        return doc

    @staticmethod
    def by_node(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """Tasks grouped by node id (masters included)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for task in doc["tasks"].values():
            out.setdefault(task["node_id"], []).append(task)
        return out

    @property
    def db(self) -> Path:
        """The state database file."""
        return self.home / "data" / "ferry.db"

    def db_dump(self) -> list[Any]:
        """Every row of the state tables (to prove a command changed nothing)."""
        with sqlite3.connect(self.db) as conn:
            return [conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                    for t in ("runs", "diffs")]


@pytest.fixture
def ferry(tmp_path: Path) -> Ferry:
    """A ferry command with its own home and an empty working directory."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    return Ferry(home=home, workdir=work)
