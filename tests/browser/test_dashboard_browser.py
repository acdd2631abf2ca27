"""The dashboard in a real browser (headless Chromium) against a real control plane and real
`ferry daemon` processes: sign-in, a run watched from Pending to Completed without a reload,
a manual task triggered, a run canceled, a runner revoked, pages without a session, a form
posted without its CSRF token, and the pages at a phone's width."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from runner import __version__
from tests.browser.conftest import REPO_ROOT, screenshot
from tests.helpers import wait_until
from tests.helpers.browser import chromium
from tests.integration.daemon.conftest import ADMIN, Server


def _by() -> Any:
    from selenium.webdriver.common.by import By

    return By


def _text(driver: Any, css: str) -> str:
    """The element's visible text, read in one step (live fragments replace elements)."""
    text = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css)
    return str(text or "").strip()


def _mark(driver: Any) -> None:
    """Tag the page: a reload (or any navigation) loses the tag."""
    driver.execute_script("window.__ferryMark = 'still here'")


def _same_page(driver: Any) -> bool:
    return bool(driver.execute_script("return window.__ferryMark === 'still here'"))


def _live(driver: Any) -> None:
    wait_until(lambda: driver.execute_script(
        "return document.documentElement.getAttribute('data-live-ready')"), timeout=20,
        message="the page's live stream")


def _full_height(driver: Any, width: int) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(int(height) + 20, 6000))


def _accept_confirm(driver: Any) -> None:
    wait_until(lambda: _alert(driver), timeout=10, message="the confirmation dialog")
    driver.switch_to.alert.accept()


def _alert(driver: Any) -> bool:
    try:
        driver.switch_to.alert  # noqa: B018 (raises without a dialog)
        return True
    except Exception:
        return False


def test_a_page_without_a_session_redirects_to_sign_in_and_back(server: Server,
                                                                 tmp_path: Path) -> None:
    run_id = server.submit("web", "gate.yaml", labels=["nobody-runs-this"])
    with chromium(1280, 900) as fresh:
        fresh.get(f"{server.url}/runs/{run_id}")
        assert "/sign-in?next=" in fresh.current_url
        assert "browser-gate" not in fresh.page_source and "Pending" not in fresh.page_source
        fresh.find_element(_by().ID, "token").send_keys(ADMIN)
        screenshot(fresh, "sign-in", tmp_path)
        fresh.find_element(_by().CSS_SELECTOR, "form button[type=submit]").click()
        # the sign-in page's own URL ends with its ?next=/runs/<id>: wait to have left it
        wait_until(lambda: "/sign-in" not in fresh.current_url
                   and fresh.current_url.endswith(f"/runs/{run_id}"), timeout=20,
                   message="back on the run after signing in")
        cookie = fresh.get_cookie("ferry_session")
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert fresh.execute_script("return document.cookie").find("ferry_session") == -1
        fresh.find_element(_by().CSS_SELECTOR, ".signout button").click()
        wait_until(lambda: "/sign-in" in fresh.current_url, timeout=20, message="signed out")
        fresh.get(f"{server.url}/runs/{run_id}")
        assert "/sign-in?next=" in fresh.current_url


def test_watch_a_run_go_from_pending_to_completed_live(server: Server, browser: Any,
                                                       daemon: Any, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    runner = daemon(name="browser-live-runner", start=False)
    run_id = server.submit("web", "live.yaml", params={"flag": str(flag)},
                           labels=[runner.label])
    browser.get(f"{server.url}/runs")
    _live(browser)
    _mark(browser)
    list_tab = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.get(f"{server.url}/runs/{run_id}")
    _live(browser)
    _mark(browser)
    assert _text(browser, "#run-status") == "Pending"
    seen = ["Pending"]
    runner.start("--once")
    wait_until(lambda: _text(browser, "#run-status") == "Running", timeout=60,
               message="the run page to show Running without a reload")
    seen.append("Running")
    wait_until(lambda: "working in" in _text(browser, "#log-body")
               or "hello from ferry" in _text(browser, "#log-body"), timeout=30,
               message="the task's log streamed into the page")
    flag.write_text("go")
    wait_until(lambda: _text(browser, "#run-status") == "Completed", timeout=60,
               message="the run page to show Completed without a reload")
    seen.append("Completed")
    print(" -> ".join(seen))
    assert _same_page(browser), "the page was reloaded"
    boxes = browser.find_elements(_by().CSS_SELECTOR, "#run-graph g.node")
    done = browser.find_elements(_by().CSS_SELECTOR, "#run-graph g.node.st-Completed")
    assert len(boxes) == 3 and len(done) == 3
    rows = browser.find_elements(_by().CSS_SELECTOR, "#run-tree tbody tr")
    assert len(rows) == 5  # setup, the matrix master and its two children, finish
    assert "us-east" in _text(browser, "#run-tree") and "(matrix)" in _text(browser, "#run-tree")
    assert runner.wait(60) == 0
    # the log of the first task: colours as classes, markup from the step escaped
    browser.get(f"{server.url}/runs/{run_id}?task=" + _task_id(server, run_id, "setup"))
    log = browser.find_element(_by().ID, "log-body")
    assert "hello from ferry <b>not bold</b>" in log.text
    assert log.find_elements(_by().CSS_SELECTOR, "span.a-fg2.a-b")
    assert not log.find_elements(_by().TAG_NAME, "b")
    link = browser.find_element(_by().CSS_SELECTOR, "a[download]").get_attribute("href")
    assert link.endswith("/log.txt")
    _full_height(browser, 1280)
    screenshot(browser, "run", tmp_path)
    browser.set_window_size(1280, 1000)
    browser.close()
    browser.switch_to.window(list_tab)
    row = f'#runs-body tr[data-run="{run_id}"]'
    wait_until(lambda: _text(browser, row + " .badge") == "Completed", timeout=30,
               message="the runs list to show Completed without a reload")
    assert _same_page(browser)
    assert "browser-live-runner" in _text(browser, row)
    screenshot(browser, "runs", tmp_path)


def _task_id(server: Server, run_id: str, node: str) -> str:
    tasks = server.run(run_id)["tasks"]
    return next(t["id"] for t in tasks.values() if t["node_id"] == node)


def test_trigger_a_manual_task(server: Server, browser: Any, daemon: Any) -> None:
    runner = daemon()
    run_id = server.submit("web", "gate.yaml", labels=[runner.label])
    browser.get(f"{server.url}/runs/{run_id}")
    _live(browser)
    button = '#run-tree button[aria-label="Trigger Approve"]'
    wait_until(lambda: browser.find_elements(_by().CSS_SELECTOR, button), timeout=60,
               message="the Trigger button of the manual task, live")
    assert _text(browser, "#run-status") == "AwaitingTrigger"
    browser.find_element(_by().CSS_SELECTOR, button).click()
    wait_until(lambda: _text(browser, "#run-status") == "Completed", timeout=60,
               message="the triggered run to complete")
    audit = _text(browser, "#run-audit")
    assert "admin (dashboard, 127.0.0.1): trigger" in audit, audit
    deploy = server.run(run_id)["tasks"]
    assert {t["node_id"]: t["status"] for t in deploy.values()}["deploy"] == "Completed"
    runner.signal(signal.SIGTERM)
    assert runner.wait(30) == 0


def test_cancel_a_running_run(server: Server, browser: Any, daemon: Any) -> None:
    runner = daemon()
    run_id = server.submit("web", "slow.yaml", labels=[runner.label])
    browser.get(f"{server.url}/runs/{run_id}")
    _live(browser)
    wait_until(lambda: _text(browser, "#run-status") == "Running", timeout=60,
               message="the run to start")
    browser.find_element(_by().CSS_SELECTOR, "#run-actions button.danger").click()
    _accept_confirm(browser)
    wait_until(lambda: _text(browser, "#run-status") == "Canceled", timeout=60,
               message="the run page to show Canceled")
    assert server.status(run_id) == "Canceled"
    assert "cancel" in _text(browser, "#run-audit")
    runner.signal(signal.SIGTERM)
    assert runner.wait(60) == 0


def test_revoke_a_runner(server: Server, browser: Any, daemon: Any, tmp_path: Path) -> None:
    runner = daemon(name="to-revoke-in-browser")
    browser.get(f"{server.url}/runners")
    _live(browser)
    row = 'tr:has(a[href^="/runners/"]):has(button[aria-label="Revoke to-revoke-in-browser"])'
    wait_until(lambda: __version__ in _text(browser, row) and "online" in _text(browser, row),
               timeout=60, message="the runner online with its version")
    screenshot(browser, "runners", tmp_path)
    browser.find_element(_by().CSS_SELECTOR, 'button[aria-label="Revoke to-revoke-in-browser"]'
                         ).click()
    _accept_confirm(browser)
    assert runner.wait(60) == 6, runner.log()[-2000:]
    assert "revoked" in runner.log()
    wait_until(lambda: "revoked" in browser.page_source, timeout=30, message="shown revoked")
    listed = subprocess.run([sys.executable, "-m", "runner", "runners", "list", "--server",
                             server.url, "--token", ADMIN], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert any(line.startswith("to-revoke-in-browser") and "revoked" in line
               for line in listed.stdout.splitlines()), listed.stdout


def test_a_form_posted_without_its_csrf_token_is_refused(server: Server, browser: Any) -> None:
    run_id = server.submit("web", "gate.yaml", labels=["nobody-runs-this"])
    browser.get(f"{server.url}/runs/{run_id}")
    # the same signed-in browser posts a form that lacks the token (as another site would)
    browser.execute_script(
        "var f = document.createElement('form'); f.method = 'post';"
        "f.action = arguments[0]; document.body.appendChild(f); f.submit();",
        f"/runs/{run_id}/cancel")
    wait_until(lambda: "CSRF token is missing or wrong" in browser.page_source, timeout=20,
               message="the refusal page")
    status = browser.execute_script(
        "return fetch(arguments[0], {method: 'POST', credentials: 'same-origin'})"
        ".then(r => r.status)", f"/runs/{run_id}/cancel")
    assert status == 403
    assert server.status(run_id) == "Pending"


def test_pages_fit_a_phone_and_buttons_take_the_keyboard(server: Server, browser: Any,
                                                         tmp_path: Path) -> None:
    run_id = server.submit("web", "gate.yaml", labels=["nobody-runs-this"])
    pages = {"runs": "/runs", "run": f"/runs/{run_id}", "runners": "/runners",
             "new": "/new?repo=web&ref=main&workflow_path=gate.yaml"}
    table = []
    try:
        for width in (1280, 390):
            browser.set_window_size(width, 900)
            for name, path in pages.items():
                browser.get(server.url + path)
                scroll, client = browser.execute_script(
                    "return [document.documentElement.scrollWidth,"
                    " document.documentElement.clientWidth]")
                table.append(f"{width:5} {name:8} scrollWidth {scroll} clientWidth {client}")
                assert scroll <= client, table[-1]
                if width == 390:
                    screenshot(browser, f"phone-{name}", tmp_path)
        print("\n".join(table))
        # keyboard: Tab reaches the Cancel button, it shows focus, Enter presses it
        browser.set_window_size(1280, 900)
        browser.get(f"{server.url}/runs/{run_id}")
        from selenium.webdriver.common.keys import Keys

        body = browser.find_element(_by().TAG_NAME, "body")
        for _ in range(40):
            body.send_keys(Keys.TAB) if _ == 0 else browser.switch_to.active_element.send_keys(
                Keys.TAB)
            active = browser.switch_to.active_element
            if active.tag_name == "button" and active.text == "Cancel run":
                break
        else:
            raise AssertionError("Tab never reached the Cancel button")
        outline = browser.execute_script(
            "return getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"
        active.send_keys(Keys.ENTER)
        _accept_confirm(browser)
        wait_until(lambda: server.status(run_id) == "Canceled", timeout=30,
                   message="Enter on the focused button to cancel the run")
        for name, path in pages.items():  # every field has a label, every button a name
            browser.get(server.url + path)
            unnamed = browser.execute_script(
                "return [...document.querySelectorAll('input:not([type=hidden]), select, "
                "textarea')].filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))"
                ".map(e => e.outerHTML).concat([...document.querySelectorAll('button, a')]"
                ".filter(e => !(e.innerText.trim() || e.getAttribute('aria-label')))"
                ".map(e => e.outerHTML))")
            assert unnamed == [], (name, unnamed)
            clickable = browser.execute_script(
                "return document.querySelectorAll('[onclick], div[role=button], span[role=button]'"
                ").length")
            assert clickable == 0, name
    finally:
        browser.set_window_size(1280, 1000)


def test_drain_a_runner_from_its_page(server: Server, browser: Any, daemon: Any) -> None:
    runner = daemon(name="to-drain-in-browser")
    browser.get(f"{server.url}/runners")
    link = 'a[href^="/runners/"]'
    wait_until(lambda: "to-drain-in-browser" in _text(browser, "#runners-body"), timeout=60,
               message="the runner listed")
    href = browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].find(a => a.innerText === "
        "'to-drain-in-browser').getAttribute('href')", link)
    browser.get(server.url + href)
    browser.find_element(_by().CSS_SELECTOR, 'button[aria-label="Drain to-drain-in-browser"]'
                         ).click()
    wait_until(lambda: "drained" in _text(browser, "main"), timeout=30,
               message="the runner page to say drained")
    assert runner.wait(60) == 0, runner.log()[-2000:]
    assert runner.logged("draining: no new claims")
    assert "admin (dashboard, 127.0.0.1): drain" in _text(browser, "main")
    browser.find_element(_by().CSS_SELECTOR,
                         'button[aria-label="Let to-drain-in-browser claim runs again"]').click()
    wait_until(lambda: "no: it claims runs" in _text(browser, "main"), timeout=30,
               message="undrained")
