"""The browser suite's world: one control plane (short leases, so a cancel lands within a
second or two), a repository of workflows, real `ferry daemon` processes, and one signed-in
headless Chromium (Selenium, Debian's chromium and chromedriver)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_until
from tests.helpers.browser import chromium
from tests.integration.daemon.conftest import ADMIN, DaemonProc, Server

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"

LIVE = r"""version: "1"
name: browser-live
nodes:
  - id: setup
    name: Setup
    steps:
      - name: greet
        run: printf '\033[1;32mhello from ferry\033[0m <b>not bold</b>\n'
  - id: regions
    name: Regions
    depends_on: [setup]
    strategy:
      type: matrix
      values: [{region: eu-west}, {region: us-east}]
    steps:
      - name: work
        run: |
          echo "working in $region"
          while [ ! -f "${{ params.flag }}" ]; do sleep 0.05; done
  - id: finish
    name: Finish
    depends_on: [regions]
    steps:
      - name: done
        run: printf '\033[33mfinished\033[0m\n'
"""

GATE = """version: "1"
name: browser-gate
nodes:
  - id: build
    name: Build
    steps: [{name: build, run: echo built}]
  - id: approve
    name: Approve
    type: manual
    depends_on: [build]
    steps: [{name: ok, run: echo approved}]
  - id: deploy
    name: Deploy
    depends_on: [approve]
    steps: [{name: deploy, run: echo deployed}]
"""

SLOW = """version: "1"
name: browser-slow
nodes:
  - id: wait
    name: Wait
    steps: [{name: sleep, run: "echo waiting; sleep 120"}]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The control plane, with repository `web` holding the suite's workflows."""
    srv = Server(tmp_path_factory.mktemp("browser"), lease_ttl=3)
    srv.start()
    srv.repo("web", {"live.yaml": LIVE, "gate.yaml": GATE, "slow.yaml": SLOW})
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture
def daemon(tmp_path: Path, server: Server) -> Iterator[Callable[..., DaemonProc]]:
    """`daemon(*args)`: a registered `ferry daemon` with a label of its own, started unless
    `start=False`; returns it (its `.label` is what runs for it carry)."""
    made: list[DaemonProc] = []

    def make(*args: str, name: str | None = None, start: bool = True) -> DaemonProc:
        label = f"b-{uuid.uuid4().hex[:8]}"
        proc = DaemonProc(tmp_path / f"home-{label}", server, name or f"runner-{label}")
        proc.home.mkdir()
        proc.register(labels=label)
        proc.label = label  # type: ignore[attr-defined]
        if start:
            proc.start(*args)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.kill()


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Any]:
    """A headless Chromium signed in to the dashboard (1280 px wide)."""
    from selenium.webdriver.common.by import By

    with chromium(1280, 1000) as driver:
        driver.get(server.url + "/sign-in")
        driver.find_element(By.ID, "token").send_keys(ADMIN)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait_until(lambda: driver.current_url.endswith("/runs"), timeout=30,
                   message="the sign-in to land on /runs")
        yield driver


def screenshot(driver: Any, name: str, tmp_path: Path) -> Path:
    """Save a screenshot under the test's tmp dir, and into docs/screenshots/ when
    FERRY_UPDATE_SCREENSHOTS=1 (how the README's pictures are made)."""
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    if os.environ.get("FERRY_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    return path
