"""What a new user trips on in the first hour, through the real CLI: short id prefixes, help
texts that match what the commands do, examples that leave the checkout clean and behave the
same on a second run."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import build_parser
from tests.integration.local.conftest import REPO, Ferry

GATE = str(REPO / "examples" / "approval-gate.yaml")


def test_a_short_run_or_task_prefix_says_prefixes_need_4(ferry: Ferry) -> None:
    proc = ferry("run", "-w", GATE)
    run_id = ferry.run_id(proc.stdout)
    for args, words in [
        (("status", "-i", run_id[:3]), [f"unknown run id '{run_id[:3]}'", "at least 4"]),
        (("logs", "-i", run_id[:2]), ["at least 4 characters"]),
        (("resume", "-i", run_id, "-t", "abc"), ["unknown task 'abc'", "at least 4"]),
    ]:
        done = ferry(*args)
        assert done.returncode == 2, args
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        for word in words:
            assert word in done.stderr, (args, done.stderr)
    # four characters is a prefix, and a node id is not subject to the rule
    assert ferry("status", "-i", run_id[:4]).returncode == 0
    done = ferry("resume", "-i", run_id, "-t", "zzz-no-node")
    assert "at least 4" not in done.stderr


def _subcommands(parser: argparse.ArgumentParser | None = None,
                 prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every command, nested ones too ("secret set", "runners drain")."""
    parser = parser or build_parser()
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[prefix + name] = sub
                found.update(_subcommands(sub, f"{prefix}{name} "))
    return found


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_has_help(command: str) -> None:
    """`-i RUN`, `--limit`, `resume --max-parallel`... each option says what it is, and each
    command has a description."""
    sub = argparse.Namespace(choices=_subcommands())
    missing = [a.option_strings[0] for a in sub.choices[command]._actions
               if a.option_strings and not a.help and a.dest != "help"]
    assert missing == [], f"ferry {command}: options without help: {missing}"
    assert sub.choices[command].description, f"ferry {command} has no description"
    # only the commands that have a local state may say they fall back to it
    server = [a.help or "" for a in sub.choices[command]._actions if "--server" in a.option_strings]
    if command.split()[0] in ("secret", "runners", "submit", "sync"):
        assert not any("local state" in h for h in server), (command, server)


def test_demo_daemon_runs_from_a_shell_without_the_venv(tmp_path: Path) -> None:
    """README: `scripts/demo-daemon` works when started directly; it once ran under whatever
    `python3` was first on PATH and died importing fastapi unless .venv was activated. On a
    machine with the Codemod CLI (as README "Running codemods" installs it) the daemon offers
    the `codemod` label: the demo's runner must have registered it, or its claim is refused."""
    from tests.helpers.codemod import codemod_cli

    engine = str(codemod_cli().path)
    bare = Path(sys.base_prefix) / "bin" / "python3"
    assert bare.exists() and sys.prefix != sys.base_prefix  # the tests run in a venv
    assert subprocess.run([bare, "-c", "import fastapi"], capture_output=True).returncode != 0
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if not p.startswith(sys.prefix))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run([bare, REPO / "scripts" / "demo-daemon", "-w", "examples/hello.yaml"],
                          env={**env, "PATH": f"{bare.parent}{os.pathsep}{path}",
                               "TMPDIR": str(tmp_path), "FERRY_CODEMOD_BIN": engine},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the dashboard shows it Completed" in done.stdout, done.stdout
