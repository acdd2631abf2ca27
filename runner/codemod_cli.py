"""Finding the Codemod CLI (upstream Butterflow's engine) on this machine.

Ferry uses it as the reference engine (`tests/differential/`) and, for the step kinds it
delegates, as a tool. Where it is, first found wins:
  1. `FERRY_CODEMOD_BIN` (the caller passes its environment),
  2. `runner.tools.codemod` in the config file,
  3. `codemod` on the `PATH` of that environment,
  4. the caller's extra candidates (e.g. the project-local `.tools/codemod` of `scripts/setup`).
An explicit choice (1 or 2) that is not an executable file is a `ConfigError`, never a silent
fall back to another binary. Pure apart from file checks; nothing here reads `os.environ`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ConfigError

ENV_VAR = "FERRY_CODEMOD_BIN"
PINNED_VERSION = "1.18.3"
"""The release Ferry's language was checked against (tests/differential)."""
NPM_PACKAGE = "@codemod.com/cli-linux-x64-gnu"
PROJECT_BIN = Path(".tools/codemod/node_modules") / NPM_PACKAGE / "codemod"
"""Where `scripts/setup` installs it, relative to the repository."""
_VERSION = re.compile(r"codemod\s+(\d+\.\d+\.\d+\S*)")


@dataclass(frozen=True)
class CodemodCli:
    """A Codemod CLI binary and how it was found."""

    path: Path
    source: str
    """`FERRY_CODEMOD_BIN`, `runner.tools.codemod`, `PATH` or `candidate`."""


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_codemod(env: Mapping[str, str], configured: str | None = None,
                 candidates: Sequence[Path] = ()) -> CodemodCli | None:
    """The Codemod CLI to use, or None when there is none; ConfigError when an explicit choice
    (`FERRY_CODEMOD_BIN`, `runner.tools.codemod`) is not an executable file."""
    for value, source in ((env.get(ENV_VAR), ENV_VAR), (configured, "runner.tools.codemod")):
        if value:
            path = Path(value).expanduser()
            if not _executable(path):
                raise ConfigError(f"{source}: {value} is not an executable file (the Codemod "
                                  f"CLI; install it with: npm install {NPM_PACKAGE}@"
                                  f"{PINNED_VERSION})")
            return CodemodCli(path, source)
    found = shutil.which("codemod", path=env.get("PATH", ""))
    if found:
        return CodemodCli(Path(found), "PATH")
    for candidate in candidates:
        if _executable(candidate):
            return CodemodCli(candidate, "candidate")
    return None


def cli_version(cli: CodemodCli, timeout: float = 30.0) -> str:
    """The version the binary reports (`codemod --version`); ConfigError when it does not run
    or answers something else."""
    try:
        done = subprocess.run([str(cli.path), "--version"], capture_output=True, text=True,
                              timeout=timeout, env={"PATH": "/usr/bin:/bin",
                                                    "HOME": "/nonexistent"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"{cli.path} ({cli.source}): cannot run it: {exc}") from exc
    match = _VERSION.search(done.stdout)
    if done.returncode != 0 or not match:
        raise ConfigError(f"{cli.path} ({cli.source}): not the Codemod CLI "
                          f"(`--version` said {done.stdout.strip()[:80]!r})")
    return match.group(1)
