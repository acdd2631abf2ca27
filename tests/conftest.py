"""Fixtures shared by every test: an isolated FERRY_HOME and the container engine."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import IN_CI
from tests.helpers.pg import PgCluster, PgUnavailable

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGE = "ferry-test/busybox:1"


@pytest.fixture
def ferry_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private FERRY_HOME: the CLI puts its database, logs, journals and config under it."""
    home = tmp_path / "ferry-home"
    home.mkdir()
    monkeypatch.setenv("FERRY_HOME", str(home))
    return home


def _engine_answers(binary: str) -> bool:
    if shutil.which(binary) is None:
        return False
    try:
        return subprocess.run([binary, "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def need_engine(binary: str = "docker") -> None:
    """Skip when no engine answers, except in CI (CI=true), where a container test fails."""
    if _engine_answers(binary):
        return
    message = f"no {binary} engine answers ('{binary} info' failed)"
    if IN_CI:
        pytest.fail(f"{message}; in CI container tests must not skip")
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_image() -> Iterator[str]:
    """The local busybox test image, built when missing; requires a Docker engine."""
    need_engine("docker")
    probe = subprocess.run(["docker", "image", "inspect", TEST_IMAGE], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(REPO_ROOT / "tests/images/build-busybox-image.sh"), "docker"],
                       check=True)
    yield TEST_IMAGE


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One throwaway PostgreSQL cluster for the session (tests take a fresh database each);
    missing PostgreSQL skips, except in CI (CI=true), where it fails."""
    try:
        cluster = PgCluster.start()
    except PgUnavailable as exc:
        if IN_CI:
            pytest.fail(f"{exc}; in CI PostgreSQL tests must not skip")
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """A fresh, empty database on the session's cluster."""
    return pg_cluster.new_database()


# -- where the suite's time goes ------------------------------------------------------------
# CI has a budget; the summary names the slow parts (time per test folder, setup and teardown
# included) so a part that grows is seen in the run that made it grow.
_SPENT: dict[str, float] = {}


def _part(nodeid: str) -> str:
    parts = nodeid.split("::", 1)[0].split("/")
    return "/".join(parts[:3]) if len(parts) > 3 else "/".join(parts[:-1]) or parts[0]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add each phase's duration to its test folder."""
    _SPENT[_part(report.nodeid)] = _SPENT.get(_part(report.nodeid), 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the time per test folder, slowest first."""
    if not _SPENT:
        return
    total = sum(_SPENT.values())
    terminalreporter.section("time per test folder")
    for part, spent in sorted(_SPENT.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{spent:8.1f} s  {100 * spent / total:5.1f}%  {part}")
    terminalreporter.write_line(f"{total:8.1f} s  in all")
