"""The reference engine for tests: the Codemod CLI (upstream Butterflow), found the way Ferry
finds it (`runner.codemod_cli`: FERRY_CODEMOD_BIN, PATH) or where `scripts/setup` installs it
(`.tools/codemod`). Missing: the test is skipped locally and FAILS in CI (`CI=true`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.codemod_cli import PINNED_VERSION, PROJECT_BIN, CodemodCli, cli_version, find_codemod

REPO = Path(__file__).resolve().parents[2]


def codemod_cli() -> CodemodCli:
    """The reference engine, checked to be the pinned release; skip (fail in CI) without it."""
    cli = find_codemod(os.environ, None, [REPO / PROJECT_BIN])
    if cli is None:
        message = ("the reference engine (Codemod CLI) is not installed: run scripts/setup, or "
                   f"set FERRY_CODEMOD_BIN (npm package @codemod.com/cli-linux-x64-gnu@"
                   f"{PINNED_VERSION})")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    version = cli_version(cli)
    if version != PINNED_VERSION:
        pytest.fail(f"{cli.path} is Codemod CLI {version}; the differential suite is pinned to "
                    f"{PINNED_VERSION}")
    return cli
